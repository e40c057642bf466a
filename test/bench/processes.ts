/**
 * The benchmark's processes: the gateway (as production starts it), the
 * stand-in upstream and the bare Fastify ceiling, each in its own process so
 * that the load generator, the server measured and the upstream behind it do
 * not share an event loop.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { startGatewayProcess, underLauncher, type GatewayProcess } from '../support/gateway-process.ts'
import { freePort } from '../support/ports.ts'
import { gatewayFile, TEST_SECRET } from '../support/stack.ts'

/** The document measured against the ceiling (ceiling.ts answers the same path). */
export const METADATA_PATH = '/.well-known/oauth-authorization-server'

/** The MCP server the benchmark's gateway names as its resource: nothing listens there, and no measurement reaches it. */
export const MCP_RESOURCE = 'http://127.0.0.1:9/mcp'

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

function stopper(child: ChildProcess) {
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  return async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await closed
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

/** `launcher`: a command that runs node, as for the gateway (GatewayProcessOptions). */
export async function startCeiling(body: string, launcher?: string[]): Promise<Started> {
  const port = await freePort()
  const child = spawn(...underLauncher(launcher, ['test/bench/ceiling.ts', String(port), body]), { stdio: ['ignore', 'pipe', 'pipe'] })
  await firstLine(child, 'the ceiling')
  return { url: `http://127.0.0.1:${port}`, child, stop: stopper(child) }
}

/**
 * The gateway from `node gateway/server.ts`, configured as in the tests but
 * with rate limits off (the benchmark is one client sending thousands of
 * requests a second) and room for a million entries in its in-memory store
 * (the benchmark runs hundreds of sign-ins a second, and the default bound
 * holds about 130 a second), logging at info, as in production. Its log lines
 * are read but not kept.
 */
export function startGateway(port: number, upstream: StartedUpstream, mcpResource: string, launcher?: string[]): Promise<GatewayProcess> {
  const url = `http://127.0.0.1:${port}`
  return startGatewayProcess({
    ...(launcher ? { launcher } : {}),
    port,
    config: { ...gatewayFile(url, upstream.issuer, mcpResource), limits: { enabled: false }, memoryStore: { maxEntries: 1_000_000 } },
    env: { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: upstream.clientSecret },
    memoryProbe: true,
    keep: () => false,
  })
}
