/**
 * Short-lived shared state: single-use marks for transactions and codes,
 * remembered answers and locks. Every entry has a TTL. The interface is what
 * a shared store (Redis) implements for several replicas; MemoryStore is the
 * embedded default for one replica.
 */
export interface Store {
  /** Marks `key` as used for `ttlSeconds`; true the first time, false on every later call while the mark lives. */
  useOnce(key: string, ttlSeconds: number, options?: WriteOptions): Promise<boolean>
  /** Writes `value` only when `key` is absent; true when it was written (a lock, or the first answer). */
  setIfAbsent(key: string, value: string, ttlSeconds: number, options?: WriteOptions): Promise<boolean>
  set(key: string, value: string, ttlSeconds: number, options?: WriteOptions): Promise<void>
  get(key: string): Promise<string | undefined>
  delete(key: string, options?: WriteOptions): Promise<void>
  /** Why the store cannot serve now (unreachable, read-only), or undefined when it can (readiness). */
  notReadyBecause(): Promise<string | undefined>
  close(): Promise<void>
}

export interface WriteOptions {
  /**
   * A write a failover must not forget (a code's spent mark, grants, revocations,
   * blocks): on Redis it returns only once `redis.waitReplicas` replicas hold it,
   * and fails with StoreUnavailable otherwise. The memory store is one process: no change.
   */
  durable?: boolean
}

/**
 * A hash tag for keys that belong together (a flow's lock and its answer, a
 * grant's records): Redis Cluster places keys whose `{…}` part is equal on one
 * slot, so a multi-key operation is allowed and a shard's failover takes
 * all of them or none. `id` is a hash or random id, without braces.
 */
export function slotTag(id: string): string {
  return `{${id}}`
}

/** Thrown when the store cannot be reached or is full; answered as 503 `temporarily_unavailable`. */
export class StoreUnavailable extends Error {
  override name = 'StoreUnavailable'
}

interface Entry {
  value: string
  expiresAt: number
}

/**
 * A bounded in-memory store: it never holds more than `maxEntries`, and
 * expired entries are swept every `sweepMs`, so that what nobody reads again
 * (remembered token answers, used marks) does not pile up until the bound.
 * Marks are kept apart, as their expiry alone: one lives per flow for as long
 * as its transaction could be replayed, tens of thousands at a time, and an
 * object each would be most of their weight. One key space, as in Redis.
 */
export class MemoryStore implements Store {
  readonly #entries = new Map<string, Entry>()
  /** Mark → when it expires, in whole seconds after `#epoch` (a small integer, which V8 keeps inside the map). */
  readonly #marks = new Map<string, number>()
  readonly #epoch = Date.now()
  readonly #maxEntries: number
  readonly #sweeper: NodeJS.Timeout

  constructor(maxEntries = 100_000, sweepMs = 10_000) {
    this.#maxEntries = maxEntries
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), sweepMs).unref()
  }

  /** The most entries it holds. */
  get maxEntries(): number {
    return this.#maxEntries
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.#entries.size + this.#marks.size
  }

  async useOnce(key: string, ttlSeconds: number): Promise<boolean> {
    const now = Date.now()
    if (this.#live(key, now) !== undefined) return false
    this.#makeRoom(key, now)
    // Rounded up: a mark may outlive its TTL by under a second, never fall short of it.
    this.#marks.set(key, Math.ceil((now - this.#epoch) / 1000 + ttlSeconds))
    return true
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    if (this.#live(key, Date.now()) !== undefined) return false
    this.#write(key, value, ttlSeconds)
    return true
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.#write(key, value, ttlSeconds)
  }

  async get(key: string): Promise<string | undefined> {
    return this.#live(key, Date.now())
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key)
    this.#marks.delete(key)
  }

  async notReadyBecause(): Promise<string | undefined> {
    return undefined
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper)
    this.#entries.clear()
    this.#marks.clear()
  }

  #sweep(now: number) {
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key)
    const seconds = (now - this.#epoch) / 1000
    for (const [key, expiry] of this.#marks) if (expiry <= seconds) this.#marks.delete(key)
  }

  /** The live value under `key` ('1' for a mark, as Redis would answer), dropping it once expired. */
  #live(key: string, now: number): string | undefined {
    const entry = this.#entries.get(key)
    if (entry !== undefined) {
      if (entry.expiresAt > now) return entry.value
      this.#entries.delete(key)
    }
    const expiry = this.#marks.get(key)
    if (expiry !== undefined) {
      if (expiry > (now - this.#epoch) / 1000) return '1'
      this.#marks.delete(key)
    }
    return undefined
  }

  #makeRoom(key: string, now: number) {
    if (this.#entries.has(key) || this.#marks.has(key) || this.size < this.#maxEntries) return
    this.#sweep(now)
    // Full of live entries: refusing is safe (the client retries); forgetting a mark would allow a replay.
    if (this.size >= this.#maxEntries) throw new StoreUnavailable('the in-memory store is full')
  }

  #write(key: string, value: string, ttlSeconds: number) {
    const now = Date.now()
    this.#makeRoom(key, now)
    this.#marks.delete(key)
    this.#entries.set(key, { value, expiresAt: now + ttlSeconds * 1000 })
  }
}
