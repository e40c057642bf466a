/**
 * Short-lived shared state: single-use marks for transactions and codes.
 * The interface is what a shared store (Redis) implements for several
 * replicas; MemoryStore is the embedded default for one replica.
 */
export interface Store {
  /** Marks `key` as used for `ttlSeconds`; true the first time, false on every later call while the mark lives. */
  useOnce(key: string, ttlSeconds: number): Promise<boolean>
  close(): Promise<void>
}

/** A bounded in-memory store: expired marks are swept, and it never holds more than `maxEntries`. */
export class MemoryStore implements Store {
  readonly #expiries = new Map<string, number>()
  readonly #maxEntries: number

  constructor(maxEntries = 100_000) {
    this.#maxEntries = maxEntries
  }

  async useOnce(key: string, ttlSeconds: number): Promise<boolean> {
    const now = Date.now()
    const expiry = this.#expiries.get(key)
    if (expiry !== undefined && expiry > now) return false
    if (this.#expiries.size >= this.#maxEntries) this.#sweep(now)
    if (this.#expiries.size >= this.#maxEntries) {
      // Full of live marks: refusing is safe (the client retries), forgetting one would allow a replay.
      throw new StoreUnavailable('the single-use store is full')
    }
    this.#expiries.set(key, now + ttlSeconds * 1000)
    return true
  }

  #sweep(now: number) {
    for (const [key, expiry] of this.#expiries) if (expiry <= now) this.#expiries.delete(key)
  }

  async close() {
    this.#expiries.clear()
  }
}

export class StoreUnavailable extends Error {
  override name = 'StoreUnavailable'
}
