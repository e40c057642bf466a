/**
 * The shared store for several replicas: the Store interface on Redis
 * (ioredis), in any of the three modes (state/redis-connection.ts). Every key
 * carries a TTL, so Redis never fills with marks nobody reads. Every command
 * touches one key, so each runs on one node of a cluster; keys that belong
 * together (a flow's lock and its answer) share a hash tag (store.ts
 * `slotTag`), so they live on one shard and a shard's failover takes both or
 * neither. Any failure of Redis becomes StoreUnavailable (503
 * `temporarily_unavailable`).
 *
 * Durable writes go to the master and then wait for `waitReplicas` replicas
 * to acknowledge them (WAIT): a failover promotes a replica that has them.
 * Fewer acknowledgements within `waitTimeoutMs` fail the write (503) rather
 * than report a success that a failover could forget.
 */
import { Cluster } from 'ioredis'
import { StoreUnavailable, type Store, type WriteOptions } from './store.ts'
import type { RedisClient } from './redis-connection.ts'

/** Why a Redis command failed, for metrics: a closed set. */
export type RedisErrorKind = 'unavailable' | 'timeout' | 'readonly' | 'cluster' | 'replication' | 'other'

export function redisErrorKind(err: unknown): RedisErrorKind {
  if (err instanceof ReplicationShortfall) return 'replication'
  const message = err instanceof Error ? err.message : String(err)
  if (/^Command timed out/.test(message)) return 'timeout'
  if (/^READONLY/.test(message)) return 'readonly'
  if (/^(CLUSTERDOWN|MOVED|ASK|TRYAGAIN)|Too many Cluster redirections|Failed to refresh slots cache/.test(message)) return 'cluster'
  if (/Stream isn't writeable|Connection is closed|connection close|max retries per request|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Socket timeout|None of the sentinels|All sentinels are unreachable|LOADING|MASTERDOWN/.test(message)) return 'unavailable'
  return 'other'
}

/** Fewer replicas acknowledged a durable write than `waitReplicas`. */
class ReplicationShortfall extends Error {
  override name = 'ReplicationShortfall'
}

export function replicationShortfall(acknowledged: number, wanted: number, timeoutMs: number): Error {
  return new ReplicationShortfall(`only ${acknowledged} of ${wanted} replicas acknowledged the write within ${timeoutMs} ms`)
}

/** How durable writes wait for replicas: config redis.waitReplicas and redis.waitTimeoutMs. */
export interface DurabilityOptions {
  /** Replicas that must acknowledge a durable write; 0 writes without waiting. */
  waitReplicas?: number
  /** How long a durable write waits for them, in milliseconds. */
  waitTimeoutMs?: number
}

/** Where each command's time and failure are told (http/metrics.ts). */
export type CommandObserver = (command: string, seconds: number, failure?: RedisErrorKind) => void

export interface RedisStoreOptions extends DurabilityOptions {
  observe?: CommandObserver
}

/** PX takes whole milliseconds; a TTL is never shorter than 1 ms, so a key never lives forever. */
function ttlMilliseconds(ttlSeconds: number): number {
  return Math.max(1, Math.ceil(ttlSeconds * 1000))
}

export class RedisStore implements Store {
  readonly #client: RedisClient
  readonly #waitReplicas: number
  readonly #waitTimeoutMs: number
  readonly #observe: CommandObserver

  /** Takes ownership of the client: `close()` ends its connection. */
  constructor(client: RedisClient, options: RedisStoreOptions = {}) {
    this.#client = client
    this.#waitReplicas = options.waitReplicas ?? 0
    this.#waitTimeoutMs = options.waitTimeoutMs ?? 500
    this.#observe = options.observe ?? (() => {})
  }

  async useOnce(key: string, ttlSeconds: number, options?: WriteOptions): Promise<boolean> {
    return this.setIfAbsent(key, '1', ttlSeconds, options)
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number, options?: WriteOptions): Promise<boolean> {
    // SET NX PX is atomic: of two replicas racing for the same key, exactly one gets OK.
    const args = [key, value, 'PX', ttlMilliseconds(ttlSeconds), 'NX'] as const
    if (!this.#durable(options)) return (await this.#run('set', () => this.#client.set(...args))) === 'OK'
    // Not held by enough replicas: taken back, so that a retry can take it again (nothing was done under it yet).
    return (await this.#durably('set', (pipeline) => pipeline.set(...args), () => this.#client.del(key))) === 'OK'
  }

  async set(key: string, value: string, ttlSeconds: number, options?: WriteOptions): Promise<void> {
    const args = [key, value, 'PX', ttlMilliseconds(ttlSeconds)] as const
    if (this.#durable(options)) await this.#durably('set', (pipeline) => pipeline.set(...args))
    else await this.#run('set', () => this.#client.set(...args))
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.#run('get', () => this.#client.get(key))) ?? undefined
  }

  async delete(key: string, options?: WriteOptions): Promise<void> {
    if (this.#durable(options)) await this.#durably('del', (pipeline) => pipeline.del(key))
    else await this.#run('del', () => this.#client.del(key))
  }

  /**
   * Not ready when Redis does not answer, when the node answers as a replica
   * (a demoted master, which refuses writes with READONLY), or when the
   * cluster says it cannot serve every slot.
   */
  async notReadyBecause(): Promise<string | undefined> {
    const client = this.#client
    try {
      if (client instanceof Cluster) {
        const info = String(await this.#run('cluster', () => client.cluster('INFO')))
        const state = /cluster_state:(\w+)/.exec(info)?.[1]
        return state === 'ok' ? undefined : `the Redis cluster cannot serve every slot (cluster_state:${state ?? 'unknown'})`
      }
      const [role] = (await this.#run('role', () => client.role())) as [string, ...unknown[]]
      return role === 'master' ? undefined : `the state store is read-only: Redis answers as ${role === 'slave' ? 'a replica' : role} (a demoted master?)`
    } catch {
      return 'the state store does not answer'
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

  #durable(options: WriteOptions | undefined): boolean {
    return options?.durable === true && this.#waitReplicas > 0
  }

  /**
   * The write and a WAIT in one pipeline: one round trip, on the connection
   * (the cluster node) that took the write, which is what WAIT counts for.
   * Returns the write's reply.
   */
  async #durably(command: string, write: (pipeline: ReturnType<RedisClient['pipeline']>) => unknown, undo?: () => Promise<unknown>): Promise<unknown> {
    return this.#run(command, async () => {
      const pipeline = this.#client.pipeline()
      write(pipeline)
      pipeline.wait(this.#waitReplicas, this.#waitTimeoutMs)
      const results = (await pipeline.exec()) ?? []
      const [[writeError, reply] = [], [waitError, acknowledged] = []] = results
      if (writeError) throw writeError
      if (waitError) throw waitError
      if ((acknowledged as number) < this.#waitReplicas) {
        if (reply !== null) await undo?.().catch(() => {})
        throw replicationShortfall(acknowledged as number, this.#waitReplicas, this.#waitTimeoutMs)
      }
      return reply
    })
  }

  /** Any failure of Redis (down, timed out, read-only, out of memory) is answered 503; the cause goes to the log. */
  async #run<T>(command: string, run: () => Promise<T>): Promise<T> {
    const started = performance.now()
    try {
      const result = await run()
      this.#observe(command, (performance.now() - started) / 1000)
      return result
    } catch (err) {
      this.#observe(command, (performance.now() - started) / 1000, redisErrorKind(err))
      throw new StoreUnavailable(`Redis: ${(err as Error).message}`, { cause: err })
    }
  }
}
