/**
 * Redis for tests: the shared server at 127.0.0.1:6379 with a random key
 * prefix per test (removed at teardown), or a private redis-server on a free
 * port for tests that stop, pause or restart it, leaving 6379 alone.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { Redis } from 'ioredis'
import { freePort } from './ports.ts'

export const SHARED_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

export function randomPrefix(): string {
  return `test-${randomUUID().slice(0, 8)}:`
}

/** A plain client without a prefix, to look at what the gateway wrote. */
export function rawClient(url = SHARED_REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false })
}

/** Every key under `prefix` with its remaining TTL in milliseconds (-1: none). */
export async function keysWithTtl(client: Redis, prefix: string): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) found.set(key, await client.pttl(key))
  } while (cursor !== '0')
  return found
}

export async function deletePrefix(prefix: string, url = SHARED_REDIS_URL): Promise<void> {
  const client = rawClient(url)
  try {
    const keys = [...(await keysWithTtl(client, prefix)).keys()]
    if (keys.length) await client.del(...keys)
  } finally {
    client.disconnect()
  }
}

export interface PrivateRedis {
  port: number
  url: string
  /** SIGSTOP: the server holds connections open but answers nothing. */
  pause(): void
  resume(): void
  stop(): Promise<void>
  /** Starts again on the same port, empty (no persistence, like a Redis that lost its data). */
  start(): Promise<void>
}

/** A redis-server of its own on a free port, without persistence; stopped at teardown. */
export async function startPrivateRedis(t: { teardown: (fn: () => unknown) => void }): Promise<PrivateRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined

  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    await untilAnswering(port)
  }
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await exited
  }

  t.teardown(stop)
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    stop,
    start,
  }
}

async function untilAnswering(port: number, within = 10_000) {
  const deadline = Date.now() + within
  for (;;) {
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    try {
      await probe.connect()
      if ((await probe.ping()) === 'PONG') return
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      probe.disconnect()
    }
  }
}
