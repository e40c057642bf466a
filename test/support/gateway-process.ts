/**
 * The gateway as production runs it: `node gateway/server.ts` in its own
 * process, configured by a file and the environment, logging JSON lines to
 * stdout. Tests read its log, its exit code and its memory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { freePort } from './ports.ts'

export interface GatewayProcess {
  url: string
  child: ChildProcess
  /** The environment the process was started with. */
  env: NodeJS.ProcessEnv
  /** Log lines, parsed; only those `keep` accepted when it was given. */
  logs: Array<Record<string, any>>
  /** Resolves with the first log line `match` accepts (from now or before), or rejects after `ms`. */
  waitForLog(match: (entry: Record<string, any>) => boolean, ms?: number): Promise<Record<string, any>>
  /** Resolves with the exit code (or signal name), once the output is read to its end. */
  exited: Promise<number | string>
  /** Resident and peak resident memory of the process, in bytes, from /proc (Linux). */
  memory(): { rss: number; peak: number }
  /** The live heap after a full garbage collection (needs `memoryProbe`). */
  liveMemory(): Promise<MemoryProbe>
  stop(): Promise<number | string>
}

export interface MemoryProbe {
  rss: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
}

export interface GatewayProcessOptions {
  /** The configuration file's content (written as JSON, which is YAML). */
  config: Record<string, unknown>
  env: Record<string, string>
  /** Extra node arguments, e.g. `--import` of a module that injects a fault. */
  nodeArgs?: string[]
  /** A command that runs node, e.g. valgrind with its options (the process keeps its pid). */
  launcher?: string[]
  /** Loads memory-probe.ts, for liveMemory(). */
  memoryProbe?: boolean
  /** The port to listen on; a free one when absent. */
  port?: number
  /** Which log lines to keep (a long run logs hundreds of thousands). */
  keep?: (entry: Record<string, any>) => boolean
}

/** The command and arguments that run node with `args`, under `launcher` when one is given. */
export function underLauncher(launcher: string[] | undefined, args: string[]): [string, string[]] {
  const [command, ...options] = launcher ?? []
  return command === undefined ? [process.execPath, args] : [command, [...options, process.execPath, ...args]]
}

export async function startGatewayProcess(options: GatewayProcessOptions): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-process-'))
  const configPath = join(dir, 'gateway.yaml')
  writeFileSync(configPath, JSON.stringify(options.config))
  const port = options.port ?? (await freePort())
  const probe = options.memoryProbe ? ['--expose-gc', '--import', './test/support/memory-probe.ts'] : []
  // Grants go to a state file of this process's own unless the test names one (to restart on it).
  const env = { PATH: process.env.PATH ?? '', GATEWAY_STATE_PATH: join(dir, 'state.sqlite'), ...options.env, GATEWAY_CONFIG: configPath, PORT: String(port), HOST: '127.0.0.1' }
  const child = spawn(...underLauncher(options.launcher, [...probe, ...(options.nodeArgs ?? []), 'gateway/server.ts']), { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const logs: Array<Record<string, any>> = []
  const waiters = new Set<{ match: (entry: Record<string, any>) => boolean; resolve: (entry: Record<string, any>) => void }>()
  let stderr = ''
  const probes: Array<(probe: MemoryProbe) => void> = []
  createInterface({ input: child.stderr! }).on('line', (line) => {
    if (line.startsWith('{"memoryProbe":')) return probes.shift()?.((JSON.parse(line) as { memoryProbe: MemoryProbe }).memoryProbe)
    if (stderr.length < 10_000) stderr += `${line}\n`
  })
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let entry: Record<string, any>
    try {
      entry = JSON.parse(line)
    } catch {
      entry = { msg: line, unparsed: true }
    }
    for (const waiter of waiters) {
      if (waiter.match(entry)) {
        waiters.delete(waiter)
        waiter.resolve(entry)
      }
    }
    if (!options.keep || options.keep(entry)) logs.push(entry)
  })
  // 'close', not 'exit': only then is the output read to its end.
  const exited = new Promise<number | string>((resolve) => child.on('close', (code, signal) => {
    rmSync(dir, { recursive: true, force: true })
    resolve(code ?? signal ?? 'unknown')
  }))

  function waitForLog(match: (entry: Record<string, any>) => boolean, ms = 30_000) {
    const seen = logs.find(match)
    if (seen) return Promise.resolve(seen)
    return new Promise<Record<string, any>>((resolve, reject) => {
      const waiter = { match, resolve: (entry: Record<string, any>) => (clearTimeout(timer), resolve(entry)) }
      const timer = setTimeout(() => {
        waiters.delete(waiter)
        reject(new Error(`no matching log line within ${ms} ms; stderr: ${stderr.slice(0, 2000)}`))
      }, ms)
      waiters.add(waiter)
      exited.then((code) => {
        if (!waiters.has(waiter)) return
        waiters.delete(waiter)
        clearTimeout(timer)
        reject(new Error(`the gateway exited (${code}) before the log line; stderr: ${stderr.slice(0, 2000)}`))
      })
    })
  }

  try {
    // Generous: a process starting on a loaded machine takes a while.
    await waitForLog((entry) => typeof entry.msg === 'string' && entry.msg.startsWith('Server listening'), 60_000)
  } catch (err) {
    // Not left running once the test process is gone.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
    throw err
  }
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    env,
    logs,
    waitForLog,
    exited,
    memory() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
      const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
      return { rss: kib('VmRSS'), peak: kib('VmHWM') }
    },
    liveMemory() {
      return new Promise<MemoryProbe>((resolve) => {
        probes.push(resolve)
        child.kill('SIGUSR2')
      })
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      return exited
    },
  }
}
