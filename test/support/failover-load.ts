/**
 * Load through a Redis failover: workers run complete flows (authorize and
 * sign-in, callback, code exchange) and refreshes against gateway replicas,
 * each step on another replica, and record every answer. A step that gets
 * 503 ends its flow (a client would start again); nothing is retried, so
 * every request sent is judged as it was answered. Afterwards: whether each
 * answer was a success or a proper 503 (JSON temporarily_unavailable with
 * Retry-After on /token, the error page in the browser), the 503 window,
 * and each redeemed code replayed once. Beside it, a writer of grants and
 * revocations keeps which of its writes were acknowledged.
 */
import type { GrantStorage } from '../../gateway/state/grant-storage.ts'
import { grantRecord, revocationOf } from './grant-fixture.ts'
import { pastRetryWindow } from './stack.ts'
import { arriveAt, authorizeAndSignIn, codeFrom, redeem, refresh, type Cluster, type Replica, type SignedIn, type TestClient } from './replicas.ts'

export type Step = 'authorize' | 'callback' | 'token' | 'refresh'

export interface Answer {
  step: Step
  /** When the answer arrived, ms since the epoch. */
  at: number
  status: number
  ok: boolean
  /** A 503 that says so properly: JSON temporarily_unavailable with Retry-After, or the page in the browser. */
  properUnavailable: boolean
  detail: string
}

interface Report {
  comment(message: string): void
  same(found: unknown, wanted: unknown, message: string): void
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function failoverLoad(cluster: Cluster, client: TestClient, replicas: Replica[], options: { workers: number; refreshes?: number }) {
  const answers: Answer[] = []
  const redeemed: Array<{ code: string; signedIn: SignedIn; replica: Replica; at: number }> = []
  let running = false
  let turn = 0
  const workers: Array<Promise<void>> = []

  const record = (step: Step, status: number, ok: boolean, properUnavailable: boolean, detail: string) => {
    const answer = { step, at: Date.now(), status, ok, properUnavailable, detail }
    answers.push(answer)
    return answer
  }

  /** A back-channel answer (JSON): ok at `okStatus`, or a proper 503. */
  const judgeJson = async (step: Step, response: Response, okStatus: number) => {
    const text = await response.text()
    let body: Record<string, any> = {}
    try {
      body = JSON.parse(text)
    } catch {}
    const proper = response.status === 503 && /^application\/json/.test(response.headers.get('content-type') ?? '') && body.error === 'temporarily_unavailable' && response.headers.get('retry-after') !== null
    return { answer: record(step, response.status, response.status === okStatus, proper, text.slice(0, 200)), body }
  }

  /** One flow and its refreshes; true when every step succeeded. */
  const flow = async (): Promise<boolean> => {
    const first = replicas[turn++ % replicas.length]!
    const second = replicas[turn % replicas.length]!
    let signedIn: SignedIn
    try {
      signedIn = await authorizeAndSignIn(cluster, first, client, second)
      record('authorize', 302, true, false, '')
    } catch (err) {
      const status = Number(/did not come back to the gateway: (\d+)/.exec((err as Error).message)?.[1] ?? 0)
      record('authorize', status, false, status === 503, (err as Error).message.slice(0, 200))
      return false
    }
    const callback = await arriveAt(second, signedIn.callback)
    if (callback.status !== 302) {
      const page = await callback.text()
      record('callback', callback.status, false, callback.status === 503 && /^text\/html/.test(callback.headers.get('content-type') ?? '') && page.includes('temporarily_unavailable'), page.slice(0, 200))
      return false
    }
    record('callback', 302, true, false, '')
    const code = codeFrom(callback)
    const exchange = await judgeJson('token', await redeem(first, client, code, signedIn), 200)
    if (!exchange.answer.ok) return false
    redeemed.push({ code, signedIn, replica: first, at: Date.now() })
    let refreshToken = exchange.body.refresh_token as string
    for (let i = 0; i < (options.refreshes ?? 2); i++) {
      const refreshed = await judgeJson('refresh', await refresh(replicas[(turn + i) % replicas.length]!, client, refreshToken), 200)
      if (!refreshed.answer.ok) return false
      refreshToken = refreshed.body.refresh_token as string
    }
    return true
  }

  const worker = async () => {
    while (running) {
      // A flow that met the outage ends; the next one starts after a pause, as a client retries.
      if (!(await flow())) await sleep(100)
    }
  }

  return {
    answers,
    /** `count` flows one after another, each must succeed; then the workers start. */
    async warm(count: number) {
      for (let i = 0; i < count; i++) if (!(await flow())) throw new Error(`a flow failed before the failover: ${JSON.stringify(answers.at(-1))}`)
      running = true
      for (let i = 0; i < options.workers; i++) workers.push(worker())
      // Every worker is in its first flow before the failover is started.
      await sleep(300)
    },
    /**
     * Keeps the load running until the gateways serve again: after `since`,
     * the last 503 is at least `quietMs` behind and back-channel steps have
     * succeeded since; then stops the workers and returns every answer.
     */
    async untilServedAgain(since: number, quietMs = 2000, within = 45_000): Promise<Answer[]> {
      const deadline = Date.now() + within
      for (;;) {
        const after = answers.filter((answer) => answer.at >= since)
        const lastFailure = after.filter((answer) => !answer.ok).at(-1)?.at ?? since
        const servedSince = after.filter((answer) => answer.ok && answer.at > lastFailure && (answer.step === 'token' || answer.step === 'refresh')).length
        if (Date.now() - lastFailure >= quietMs && servedSince >= 4) break
        if (Date.now() > deadline) {
          running = false
          await Promise.all(workers)
          throw new Error(`the gateways did not serve again within ${within} ms; the last answers: ${JSON.stringify(answers.slice(-5))}`)
        }
        await sleep(100)
      }
      running = false
      await Promise.all(workers)
      return answers
    },
    /** Asserts every answer was a success or a proper 503; prints and returns the 503 window relative to `since`. */
    report(t: Report, all: Answer[], since: number) {
      t.same(all.filter((answer) => !answer.ok && !answer.properUnavailable), [], 'every request answered: success, or 503 temporarily_unavailable (JSON with Retry-After, or the page)')
      const failures = all.filter((answer) => !answer.ok && answer.at >= since)
      const after = all.filter((answer) => answer.at >= since)
      const firstFailure = failures[0]?.at
      const lastFailure = failures.at(-1)?.at
      const firstServed = after.find((answer) => answer.ok && (lastFailure === undefined || answer.at > lastFailure) && (answer.step === 'token' || answer.step === 'refresh'))?.at
      const windowMs = firstFailure === undefined ? 0 : lastFailure! - firstFailure
      const counts = (list: Answer[]) => Object.entries(Object.groupBy(list, (answer) => answer.step)).map(([step, group]) => `${step} ${group!.length}`).join(', ')
      t.comment(
        failures.length === 0
          ? `no request got 503 (${after.length} answered after the kill)`
          : `503 window ${windowMs} ms: first 503 ${firstFailure! - since} ms after the kill, last ${lastFailure! - since} ms after, first back-channel success after it ${firstServed === undefined ? 'none' : `${firstServed - since} ms`}; ${failures.length} of ${after.length} requests after the kill got 503 (${counts(failures)})`,
      )
      return { windowMs, unavailable: failures.length, served: after.filter((answer) => answer.ok).length }
    },
    /** `count` complete flows now, each must succeed. */
    async completeFlows(count: number) {
      const done: boolean[] = []
      for (let i = 0; i < count; i++) {
        if (!(await flow())) throw new Error(`a flow failed: ${JSON.stringify(answers.at(-1))}`)
        done.push(true)
      }
      return done
    },
    /**
     * Every code redeemed so far, sent once more (to the other replica), once
     * the last is past the window in which a repeat gets the first answer again
     * (lifetimes.codeRetrySeconds): the answers.
     */
    async replayCodes(retrySeconds: number) {
      await pastRetryWindow(Math.max(...redeemed.map((entry) => entry.at)), retrySeconds)
      return Promise.all(redeemed.map(async ({ code, signedIn, replica }) => {
        const other = replicas[(replicas.indexOf(replica) + 1) % replicas.length]!
        const response = await redeem(other, client, code, signedIn)
        const body = (await response.json()) as { error?: string; error_description?: string }
        return { status: response.status, error: body.error, description: body.error_description }
      }))
    },
  }
}

/** What the replicas logged as the cause of their failed requests since `since`, counted: `3× Command timed out, …`. */
export function failureCauses(replicas: Replica[], since: number): string {
  const causes = replicas.flatMap((replica) => replica.logs().filter((line) => line.msg === 'request failed' && line.time >= since).map((line) => String(line.err?.message ?? line.error ?? 'unknown')))
  // The cause's first clause: `Redis: only 0 of 1 replicas acknowledged …`, `Redis: Command timed out`.
  const counted = Object.entries(Object.groupBy(causes, (cause) => cause.split(/[:.](?= )/).slice(0, 2).join(':').replace(/\d+ of \d+/, 'n of m')))
  return counted.map(([cause, list]) => `${list!.length}× ${cause}`).join(', ') || 'none logged'
}

/**
 * Writes grants and their revocations through `storage` in a loop until
 * stopped, keeping which writes were acknowledged and when; `lost(before)`
 * names those acknowledged before a moment that storage no longer has.
 */
export function grantWriter(storage: GrantStorage) {
  const acknowledged = { grants: [] as Array<{ id: string; at: number }>, revocations: [] as Array<{ id: string; at: number }> }
  let writing = true
  let refused = 0
  const loop = (async () => {
    for (let n = 0; writing; n++) {
      const grant = grantRecord(n)
      try {
        await storage.createGrant(grant)
        acknowledged.grants.push({ id: grant.grantId, at: Date.now() })
        await storage.addRevocations([revocationOf(grant.grantId)])
        acknowledged.revocations.push({ id: grant.grantId, at: Date.now() })
      } catch {
        refused++
        await sleep(20)
      }
    }
  })()
  return {
    acknowledged,
    get refused() {
      return refused
    },
    async stop() {
      writing = false
      await loop
    },
    /** Acknowledged grants and revocations that storage no longer has. */
    async lost() {
      const grants: string[] = []
      for (const { id } of acknowledged.grants) if ((await storage.getGrant(id)) === undefined) grants.push(id)
      const revocations: string[] = []
      for (const { id } of acknowledged.revocations) if ((await storage.getRevocation(`grant:${id}`)) === undefined) revocations.push(id)
      return { grants, revocations }
    },
  }
}
