/**
 * Short-lived shared state: single-use marks for transactions and codes,
 * remembered answers and locks. Every entry has a TTL. The interface is what
 * a shared store (Redis) implements for several replicas; MemoryStore is the
 * embedded default for one replica.
 */
export interface Store {
  /** Marks `key` as used for `ttlSeconds`; true the first time, false on every later call while the mark lives. */
  useOnce(key: string, ttlSeconds: number): Promise<boolean>
  /** Writes `value` only when `key` is absent; true when it was written (a lock, or the first answer). */
  setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean>
  set(key: string, value: string, ttlSeconds: number): Promise<void>
  get(key: string): Promise<string | undefined>
  delete(key: string): Promise<void>
  /** Whether the store answers (readiness). */
  ping(): Promise<boolean>
  close(): Promise<void>
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
 */
export class MemoryStore implements Store {
  readonly #entries = new Map<string, Entry>()
  readonly #maxEntries: number
  readonly #sweeper: NodeJS.Timeout

  constructor(maxEntries = 100_000, sweepMs = 10_000) {
    this.#maxEntries = maxEntries
    this.#sweeper = setInterval(() => this.#sweep(Date.now()), sweepMs).unref()
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.#entries.size
  }

  async useOnce(key: string, ttlSeconds: number): Promise<boolean> {
    return this.setIfAbsent(key, '1', ttlSeconds)
  }

  async setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    if (this.#live(key, Date.now())) return false
    this.#write(key, value, ttlSeconds)
    return true
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.#write(key, value, ttlSeconds)
  }

  async get(key: string): Promise<string | undefined> {
    return this.#live(key, Date.now())?.value
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key)
  }

  async ping(): Promise<boolean> {
    return true
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper)
    this.#entries.clear()
  }

  #sweep(now: number) {
    for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key)
  }

  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key)
    if (entry && entry.expiresAt <= now) {
      this.#entries.delete(key)
      return undefined
    }
    return entry
  }

  #write(key: string, value: string, ttlSeconds: number) {
    const now = Date.now()
    if (!this.#entries.has(key) && this.#entries.size >= this.#maxEntries) {
      this.#sweep(now)
      // Full of live entries: refusing is safe (the client retries); forgetting a mark would allow a replay.
      if (this.#entries.size >= this.#maxEntries) throw new StoreUnavailable('the in-memory store is full')
    }
    this.#entries.set(key, { value, expiresAt: now + ttlSeconds * 1000 })
  }
}
