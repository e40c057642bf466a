/**
 * The shared store for several replicas: the Store interface on Redis
 * (ioredis). Every key carries a TTL, so Redis never fills with marks nobody
 * reads. A request never waits for an unreachable Redis: with the offline
 * queue off a command fails at once while the connection is down, a command
 * Redis does not answer fails after `commandTimeoutMs`, and either becomes
 * StoreUnavailable (503 `temporarily_unavailable`). The client reconnects
 * with backoff in the background, so the gateway recovers by itself.
 */
import { Redis } from 'ioredis'
import { StoreUnavailable, type Store } from './store.ts'

export interface RedisClientOptions {
  /** redis:// or rediss:// URL, possibly with a password; from REDIS_URL only, never logged. */
  url: string
  /** Put before every key by the client itself, so the store and anything sharing the client stay in one namespace. */
  keyPrefix: string
  /** How long a command may wait for Redis before the request gets a 503. */
  commandTimeoutMs: number
}

/** Where connection changes are told; a Fastify (pino) logger fits. */
export interface ConnectionLog {
  info(details: object, message: string): void
  warn(details: object, message: string): void
}

/** Reconnect backoff: 50 ms, 100 ms, … capped at 2 s, so a restarted Redis is found again within seconds. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt - 1, 6), 2000)
}

/**
 * The one Redis connection of a replica, shared by the store and anything
 * else that needs Redis (rate limits). Not connected yet: `connectRedis`
 * starts it once there is a logger to tell about it.
 */
export function createRedisClient(options: RedisClientOptions): Redis {
  return new Redis(options.url, {
    lazyConnect: true,
    keyPrefix: options.keyPrefix,
    enableOfflineQueue: false,
    commandTimeout: options.commandTimeoutMs,
    // A connection that stops answering (a network partition, a paused server) is dropped and
    // reconnected, instead of timing out every later command one by one.
    socketTimeout: options.commandTimeoutMs * 2,
    connectTimeout: Math.max(options.commandTimeoutMs * 2, 1000),
    // A command in flight when the connection drops fails at once rather than being resent later:
    // the client gets a 503 and retries, instead of a resent SET NX reporting its own first write as a replay.
    maxRetriesPerRequest: 0,
    retryStrategy: reconnectDelay,
    connectionName: 'oauth-gateway',
  })
}

/**
 * Connects in the background and keeps reconnecting for as long as the
 * process runs; until the connection is ready, commands fail fast and
 * /readyz says not ready. Logs one line when Redis goes away and one when it
 * is back, not one per reconnect attempt.
 */
export function connectRedis(client: Redis, log: ConnectionLog): void {
  let down = false
  const lost = (reason: string) => {
    if (down) return
    down = true
    log.warn({ reason }, 'Redis is unreachable; requests that need it are answered 503 until it is back')
  }
  client.on('ready', () => {
    down = false
    log.info({}, 'Redis connected')
  })
  // ioredis emits 'error' on every failed attempt; without a listener Node would end the process.
  client.on('error', (err: Error) => lost(err.message))
  // Only an unintended loss reconnects; quit() at shutdown does not.
  client.on('reconnecting', () => lost('the connection was lost'))
  // A failed first attempt is retried by retryStrategy like any later one.
  client.connect().catch(() => {})
}

/** PX takes whole milliseconds; a TTL is never shorter than 1 ms, so a key never lives forever. */
function ttlMilliseconds(ttlSeconds: number): number {
  return Math.max(1, Math.ceil(ttlSeconds * 1000))
}

export class RedisStore implements Store {
  readonly #client: Redis

  /** Takes ownership of the client: `close()` ends its connection. */
  constructor(client: Redis) {
    this.#client = client
  }

  async useOnce(key: string, ttlSeconds: number): Promise<boolean> {
    return this.setIfAbsent(key, '1', ttlSeconds)
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    // SET NX PX is atomic: of two replicas racing for the same key, exactly one gets OK.
    return (await this.#run(() => this.#client.set(key, value, 'PX', ttlMilliseconds(ttlSeconds), 'NX'))) === 'OK'
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    await this.#run(() => this.#client.set(key, value, 'PX', ttlMilliseconds(ttlSeconds)))
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.#run(() => this.#client.get(key))) ?? undefined
  }

  async delete(key: string): Promise<void> {
    await this.#run(() => this.#client.del(key))
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.#client.ping()) === 'PONG'
    } catch {
      return false
    }
  }

  async close(): Promise<void> {
    try {
      await this.#client.quit()
    } catch {
      // Not connected: nothing to say goodbye to.
    }
    // Ends the socket, or the reconnect attempts while Redis is away.
    this.#client.disconnect()
  }

  /** Any failure of Redis (down, timed out, out of memory) is answered 503; the cause goes to the log. */
  async #run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command()
    } catch (err) {
      throw new StoreUnavailable(`Redis: ${(err as Error).message}`, { cause: err })
    }
  }
}
