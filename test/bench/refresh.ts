/**
 * The refresh through the grant registry, counted: store round trips per
 * refresh (the short-lived Store's single flight, and grant storage), and the
 * time the registry adds (its calls, storage included), p50 and p99, on the
 * SQLite state file and on Redis. In process, against the real oidc-provider
 * upstream: each refresh uses the token the previous one returned (the
 * upstream rotates), one after another.
 *
 * Before grants, a refresh made only the single flight's round trips; every
 * grant-storage round trip is what the registry adds.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { GrantStorage } from '../../gateway/state/grant-storage.ts'
import { RedisGrantStorage } from '../../gateway/state/redis-grant-storage.ts'
import { connectRedis, createRedisClient, RedisStore } from '../../gateway/state/redis-store.ts'
import { SqliteGrantStorage } from '../../gateway/state/sqlite-grant-storage.ts'
import { MemoryStore, type Store } from '../../gateway/state/store.ts'
import { exchangeCode, obtainCode, postForm, registerClient } from '../support/flow.ts'
import { deletePrefix, randomPrefix, SHARED_REDIS_URL } from '../support/redis.ts'
import { startStack } from '../support/stack.ts'

export interface RefreshFigures {
  storage: 'sqlite' | 'redis'
  refreshes: number
  /** Per refresh: the Store's (single flight), grant storage's, and both. */
  storeRoundTrips: number
  grantStorageRoundTrips: number
  roundTrips: number
  /** Which grant-storage calls a refresh makes. */
  grantStorageCalls: Record<string, number>
  /** Time inside the registry per refresh (openForRefresh + refreshed), ms. */
  registryP50Ms: number
  registryP99Ms: number
  /** Reloads of the blocks cache during the run (every 500 ms, whatever the traffic; not counted above). */
  blockReloads: number
}

/** Counts every call of an object's methods, by name. */
function counted<T extends object>(target: T, counts: Map<string, number>): T {
  return new Proxy(target, {
    get(object, property) {
      // Read on the object itself: its getters use private fields, which a proxy does not have.
      const value = Reflect.get(object, property)
      if (typeof value !== 'function') return value
      if (property === 'close' || property === 'ping') return value.bind(object)
      return (...args: unknown[]) => {
        counts.set(String(property), (counts.get(String(property)) ?? 0) + 1)
        return (value as (...a: unknown[]) => unknown).apply(object, args)
      }
    },
  })
}

function percentile(values: number[], p: number) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}

const total = (counts: Map<string, number>) => [...counts.values()].reduce((sum, n) => sum + n, 0)

export async function measureRefreshes(kind: 'sqlite' | 'redis', refreshes: number): Promise<RefreshFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-refresh-'))
  const prefix = randomPrefix()
  let redis: Redis | undefined
  let store: Store
  let storage: GrantStorage
  if (kind === 'redis') {
    redis = createRedisClient({ url: SHARED_REDIS_URL, keyPrefix: prefix, commandTimeoutMs: 5000 })
    connectRedis(redis, { info() {}, warn() {} })
    await new Promise((resolve) => redis!.once('ready', resolve))
    store = new RedisStore(redis)
    storage = new RedisGrantStorage(redis)
  } else {
    store = new MemoryStore()
    storage = new SqliteGrantStorage(join(dir, 'state.sqlite'))
  }
  const storeCalls = new Map<string, number>()
  const storageCalls = new Map<string, number>()
  // Rate limits off: they count in Redis apart from the store, and one client refreshing this often would reach them.
  const stack = await startStack({ store: counted(store, storeCalls), grantStorage: counted(storage, storageCalls), redis, config: (file) => ({ ...file, limits: { enabled: false } }) })
  try {
    const client = await registerClient(stack)
    let refreshToken = (await exchangeCode(stack, client, await obtainCode(stack, client))).refresh_token!
    const { grants } = stack.gateway.gateway
    const times: number[] = []
    let inside = 0
    for (const method of ['openForRefresh', 'refreshed'] as const) {
      const original = grants[method].bind(grants) as (...args: unknown[]) => Promise<unknown>
      ;(grants as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
        const started = performance.now()
        try {
          return await original(...args)
        } finally {
          inside += performance.now() - started
        }
      }
    }
    storeCalls.clear()
    storageCalls.clear()
    // The blocks cache reloads on a timer, whatever the traffic: not a cost of a refresh.
    const reloads = () => storageCalls.get('listBlocks') ?? 0
    for (let i = 0; i < refreshes; i++) {
      inside = 0
      const answer = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: client.client_id })
      if (answer.status !== 200) throw new Error(`refresh ${i} failed: ${answer.status} ${await answer.text()}`)
      refreshToken = ((await answer.json()) as { refresh_token?: string }).refresh_token ?? refreshToken
      times.push(inside)
    }
    const blockReloads = reloads()
    storageCalls.delete('listBlocks')
    const perRefresh = (n: number) => Number((n / refreshes).toFixed(2))
    return {
      storage: kind,
      refreshes,
      storeRoundTrips: perRefresh(total(storeCalls)),
      grantStorageRoundTrips: perRefresh(total(storageCalls)),
      roundTrips: perRefresh(total(storeCalls) + total(storageCalls)),
      grantStorageCalls: Object.fromEntries([...storageCalls].map(([name, n]) => [name, perRefresh(n)])),
      registryP50Ms: Number(percentile(times, 0.5).toFixed(3)),
      registryP99Ms: Number(percentile(times, 0.99).toFixed(3)),
      blockReloads,
    }
  } finally {
    await stack.close()
    rmSync(dir, { recursive: true, force: true })
    if (redis) await deletePrefix(prefix)
  }
}

/** The line the benchmark prints for one storage. */
export function refreshLine(figures: RefreshFigures): string {
  const calls = Object.entries(figures.grantStorageCalls).map(([name, n]) => `${name} ${n}`).join(', ')
  return `refresh through the registry (${figures.storage}, ${figures.refreshes} refreshes): ${figures.roundTrips} store round trips per refresh, ${figures.storeRoundTrips} single flight + ${figures.grantStorageRoundTrips} grant storage (${calls}); registry p50 ${figures.registryP50Ms} ms, p99 ${figures.registryP99Ms} ms`
}
