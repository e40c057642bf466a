/**
 * The benchmark's processes: the gateway (as production starts it, logging
 * to a file as it would to a log collector), the stand-in upstream and the
 * bare Fastify ceiling, each in its own process so that the load generator,
 * the server measured and the upstream behind it do not share an event loop.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { MemoryProbe } from '../support/gateway-process.ts'
import { freePort } from '../support/ports.ts'
import { gatewayFile, TEST_SECRET } from '../support/stack.ts'

export interface Started {
  url: string
  child: ChildProcess
  stop(): Promise<void>
}

export interface StartedUpstream extends Started {
  issuer: string
  clientId: string
  clientSecret: string
  account: { username: string; password: string }
}

export interface StartedGateway extends Started {
  /** The gateway's log, one JSON line per entry. */
  logFile: string
  /** Resident memory and the live heap after a full garbage collection, in bytes (memory-probe.ts). */
  liveMemory(): Promise<MemoryProbe>
  /** Peak resident memory of the process so far, in bytes. */
  peakRss(): number
}

function stopper(child: ChildProcess, cleanup = () => {}) {
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  return async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await closed
    cleanup()
  }
}

/** Resolves with the child's first stdout line, or rejects when it exits first. */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve)
    child.once('close', (code) => reject(new Error(`${what} exited (${code}) before it was ready: ${stderr}`)))
  })
}

export async function startUpstreamProcess(callbackUrl: string): Promise<StartedUpstream> {
  const child = spawn(process.execPath, ['test/bench/upstream-process.ts', callbackUrl], { stdio: ['ignore', 'pipe', 'pipe'] })
  const ready = JSON.parse(await firstLine(child, 'the upstream')) as Omit<StartedUpstream, keyof Started>
  return { ...ready, url: ready.issuer, child, stop: stopper(child) }
}

export async function startCeiling(body: string): Promise<Started> {
  const port = await freePort()
  const child = spawn(process.execPath, ['test/bench/ceiling.ts', String(port), body], { stdio: ['ignore', 'pipe', 'pipe'] })
  await firstLine(child, 'the ceiling')
  return { url: `http://127.0.0.1:${port}`, child, stop: stopper(child) }
}

/**
 * The gateway from `node gateway/server.ts`, configured as in the tests but
 * with rate limits off (the benchmark is one client sending thousands of
 * requests a second) and logging at info, as in production.
 */
export async function startGateway(port: number, upstream: StartedUpstream, mcpResource: string): Promise<StartedGateway> {
  const url = `http://127.0.0.1:${port}`
  const dir = mkdtempSync(join(tmpdir(), 'gateway-bench-'))
  const configPath = join(dir, 'gateway.yaml')
  const logFile = join(dir, 'gateway.log')
  writeFileSync(configPath, JSON.stringify({ ...gatewayFile(url, upstream.issuer, mcpResource), limits: { enabled: false } }))
  const log = openSync(logFile, 'w')
  const child = spawn(process.execPath, ['--expose-gc', '--import', './test/support/memory-probe.ts', 'gateway/server.ts'], {
    env: { PATH: process.env.PATH ?? '', GATEWAY_CONFIG: configPath, PORT: String(port), HOST: '127.0.0.1', GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: upstream.clientSecret },
    stdio: ['ignore', log, 'pipe'],
  })
  const probes: Array<(memory: MemoryProbe) => void> = []
  let stderr = ''
  createInterface({ input: child.stderr! }).on('line', (line) => {
    if (line.startsWith('{"memoryProbe":')) probes.shift()?.((JSON.parse(line) as { memoryProbe: MemoryProbe }).memoryProbe)
    else stderr = (stderr + line + '\n').slice(-4000)
  })
  const stop = stopper(child, () => rmSync(dir, { recursive: true, force: true }))
  for (let attempt = 0; ; attempt++) {
    const ready = await fetch(`${url}/readyz`).then((response) => response.ok, () => false)
    if (ready) break
    if (child.exitCode !== null || attempt > 300) {
      await stop()
      throw new Error(`the gateway did not become ready: ${stderr}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    url,
    child,
    logFile,
    stop,
    liveMemory: () =>
      new Promise<MemoryProbe>((resolve) => {
        probes.push(resolve)
        child.kill('SIGUSR2')
      }),
    peakRss() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8')
      return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? NaN) * 1024
    },
  }
}
