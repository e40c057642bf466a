/** The doctor's results: one line per check, and the fix for each failure. */

/** `warn`: works, but a client may stumble; `skip`: not checked, because an earlier check failed or it does not apply. */
export type Status = 'pass' | 'fail' | 'warn' | 'skip'

export interface CheckResult {
  /** Short and stable, e.g. `upstream discovery`, `redirect URI (chatgpt preset)`. */
  name: string
  status: Status
  /** What was observed. */
  detail: string
  /** What to change, for a failure or a warning. */
  fix?: string | undefined
}

/** Collects results in order and hands each on as soon as it is known. */
export class Report {
  readonly results: CheckResult[] = []
  readonly #onResult: (result: CheckResult) => void

  constructor(onResult: (result: CheckResult) => void = () => {}) {
    this.#onResult = onResult
  }

  pass(name: string, detail: string) {
    this.#add({ name, status: 'pass', detail })
  }

  fail(name: string, detail: string, fix: string) {
    this.#add({ name, status: 'fail', detail, fix })
  }

  warn(name: string, detail: string, fix: string) {
    this.#add({ name, status: 'warn', detail, fix })
  }

  skip(name: string, detail: string) {
    this.#add({ name, status: 'skip', detail })
  }

  #add(result: CheckResult) {
    this.results.push(result)
    this.#onResult(result)
  }
}

/** A result as printed: `PASS name: detail`, and `     fix: …` under a failure or warning. */
export function formatResult(result: CheckResult): string {
  const line = `${result.status.toUpperCase().padEnd(4)} ${result.name}: ${result.detail}`
  return result.fix ? `${line}\n     fix: ${result.fix}` : line
}

export function summarise(results: readonly CheckResult[]): string {
  const count = (status: Status) => results.filter((result) => result.status === status).length
  return `${count('pass')} passed, ${count('fail')} failed, ${count('warn')} warnings, ${count('skip')} skipped`
}
