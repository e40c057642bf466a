/**
 * RedisStore against real Redis: the Store semantics, TTLs on every key, one
 * winner when replicas race, and failing fast (StoreUnavailable) when Redis is
 * down or stops answering, then recovering by itself.
 */
import t, { type Test } from 'tap'
import { connectRedis, createRedisClient, reconnectDelay, type RedisClient } from '../../gateway/state/redis-connection.ts'
import { RedisStore } from '../../gateway/state/redis-store.ts'
import { StoreUnavailable } from '../../gateway/state/store.ts'
import { deletePrefix, keysWithTtl, randomPrefix, rawClient, SHARED_REDIS_URL, startPrivateRedis } from '../support/redis.ts'

const silent = { info() {}, warn() {} }
const single = (url: string) => ({ mode: 'single' as const, url, tls: url.startsWith('rediss:') })
const ready = async (store: RedisStore) => (await store.notReadyBecause()) === undefined
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A connected store on `url`, closed at teardown. */
async function storeOn(t: Test, url: string, options: { keyPrefix?: string; commandTimeoutMs?: number; log?: typeof silent } = {}) {
  const client = createRedisClient({ connection: single(url), keyPrefix: options.keyPrefix ?? randomPrefix(), commandTimeoutMs: options.commandTimeoutMs ?? 1000 })
  connectRedis(client, options.log ?? silent)
  const store = new RedisStore(client)
  t.teardown(() => store.close())
  await eventually(() => ready(store))
  return { store, client }
}

/** Resolves once the client has begun `count` more reconnect attempts. */
function reconnectAttempts(client: RedisClient, count: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0
    const counted = () => {
      if (++seen < count) return
      client.off('reconnecting', counted)
      resolve()
    }
    client.on('reconnecting', counted)
  })
}

async function eventually(check: () => Promise<boolean>, within = 10_000) {
  const deadline = Date.now() + within
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('condition not reached')
    await sleep(50)
  }
}

t.test('the Store semantics, every key under the prefix and with a TTL', async (t) => {
  const prefix = randomPrefix()
  t.teardown(() => deletePrefix(prefix))
  const { store } = await storeOn(t, SHARED_REDIS_URL, { keyPrefix: prefix })

  t.equal(await store.useOnce('code:1', 60), true, 'first use')
  t.equal(await store.useOnce('code:1', 60), false, 'second use refused')
  t.equal(await store.setIfAbsent('lock', 'a', 60), true)
  t.equal(await store.setIfAbsent('lock', 'b', 60), false, 'a held lock is not taken')
  t.equal(await store.get('lock'), 'a')
  await store.set('lock', 'c', 30)
  t.equal(await store.get('lock'), 'c', 'set overwrites')
  await store.delete('lock')
  t.equal(await store.get('lock'), undefined, 'deleted')
  t.equal(await store.get('never-written'), undefined)
  await store.set('value', 'v', 120)
  t.equal(await store.notReadyBecause(), undefined)

  const raw = rawClient()
  t.teardown(() => raw.disconnect())
  const keys = await keysWithTtl(raw, prefix)
  t.same([...keys.keys()].sort(), [`${prefix}code:1`, `${prefix}value`], 'keys live under the prefix')
  t.ok(keys.get(`${prefix}code:1`)! > 0 && keys.get(`${prefix}code:1`)! <= 60_000, 'a mark has its TTL')
  t.ok(keys.get(`${prefix}value`)! > 60_000 && keys.get(`${prefix}value`)! <= 120_000, 'a value has its TTL')
})

t.test('entries expire, and an expired mark can be set again', async (t) => {
  const prefix = randomPrefix()
  t.teardown(() => deletePrefix(prefix))
  const { store } = await storeOn(t, SHARED_REDIS_URL, { keyPrefix: prefix })
  await store.set('short', 'x', 0.05)
  t.equal(await store.useOnce('mark', 0.05), true)
  await sleep(150)
  t.equal(await store.get('short'), undefined, 'expired')
  t.equal(await store.useOnce('mark', 60), true, 'the expired mark is free again')
  await store.set('tiny', 'x', 0.0001)
  const raw = rawClient()
  t.teardown(() => raw.disconnect())
  t.not((await keysWithTtl(raw, prefix)).get(`${prefix}tiny`), -1, 'a TTL under a millisecond is rounded up, never dropped')
})

t.test('replicas racing for one mark: exactly one wins', async (t) => {
  const prefix = randomPrefix()
  t.teardown(() => deletePrefix(prefix))
  const replicas = await Promise.all([1, 2, 3].map(() => storeOn(t, SHARED_REDIS_URL, { keyPrefix: prefix })))
  const attempts = replicas.flatMap(({ store }) => Array.from({ length: 10 }, () => store.useOnce('code:raced', 60)))
  const results = await Promise.all(attempts)
  t.equal(results.filter(Boolean).length, 1, 'one of 30 concurrent uses succeeds')
})

t.test('Redis unreachable: StoreUnavailable at once, and not ready', async (t) => {
  // A port nothing listens on: the private server is stopped before the client starts.
  const redis = await startPrivateRedis(t)
  await redis.stop()
  const warnings: string[] = []
  const client = createRedisClient({ connection: single(redis.url), keyPrefix: randomPrefix(), commandTimeoutMs: 1000 })
  connectRedis(client, { info() {}, warn: (_details, message) => warnings.push(message) })
  const store = new RedisStore(client)
  t.teardown(() => store.close())

  await t.rejects(store.useOnce('code:1', 60), StoreUnavailable)
  await t.rejects(store.get('x'), StoreUnavailable)
  await t.rejects(store.set('x', 'y', 1), StoreUnavailable)
  await t.rejects(store.setIfAbsent('x', 'y', 1), StoreUnavailable)
  await t.rejects(store.delete('x'), StoreUnavailable)
  t.equal(await store.notReadyBecause(), 'the state store does not answer', 'readiness says no')
  await reconnectAttempts(client, 3)
  t.equal(warnings.length, 1, 'one warning for the outage, not one per reconnect attempt')
})

t.test('Redis stops answering: a command gives up after commandTimeoutMs; it recovers by itself', async (t) => {
  const redis = await startPrivateRedis(t)
  const { store } = await storeOn(t, redis.url, { commandTimeoutMs: 200 })
  t.equal(await store.useOnce('before', 60), true)

  redis.pause()
  const failure = await store.useOnce('during', 60).catch((err: unknown) => err)
  t.type(failure, StoreUnavailable, 'a paused Redis is answered with StoreUnavailable')
  t.match((failure as Error).message, /Command timed out/, 'given up by the command timeout, not left hanging')
  t.equal(await store.notReadyBecause(), 'the state store does not answer')

  redis.resume()
  await eventually(() => ready(store))
  t.equal(await store.useOnce('before', 60), false, 'marks written before the pause are kept')
  t.equal(await store.useOnce('after', 60), true, 'new marks are written again')
})

t.test('Redis restarted: refused while down, then reconnects by itself', async (t) => {
  const redis = await startPrivateRedis(t)
  const { store } = await storeOn(t, redis.url, { commandTimeoutMs: 200 })
  await redis.stop()
  await t.rejects(store.useOnce('x', 60), StoreUnavailable, 'down')
  await redis.start()
  await eventually(() => ready(store))
  t.equal(await store.useOnce('x', 60), true, 'works again without a restart of the client')
})

t.test('close ends the connection, also while Redis is away', async (t) => {
  const client: RedisClient = createRedisClient({ connection: single(SHARED_REDIS_URL), keyPrefix: randomPrefix(), commandTimeoutMs: 1000 })
  connectRedis(client, silent)
  const store = new RedisStore(client)
  await eventually(() => ready(store))
  await store.close()
  await t.rejects(store.get('x'), StoreUnavailable)
  await eventually(async () => client.status === 'end' || client.status === 'reconnecting')
  t.equal(client.status, 'end', 'closed for good: no reconnecting')

  const redis = await startPrivateRedis(t)
  await redis.stop()
  const away = createRedisClient({ connection: single(redis.url), keyPrefix: randomPrefix(), commandTimeoutMs: 1000 })
  connectRedis(away, silent)
  await reconnectAttempts(away, 1)
  await new RedisStore(away).close()
  let attempts = 0
  away.on('connecting', () => attempts++)
  await sleep(600)
  t.equal(attempts, 0, 'reconnect attempts stop')
})

t.test('reconnect backoff grows and is capped', async (t) => {
  t.equal(reconnectDelay(1), 50)
  t.equal(reconnectDelay(2), 100)
  t.ok(reconnectDelay(5) > reconnectDelay(4))
  t.equal(reconnectDelay(1000), 2000, 'a long outage is retried every 2 s')
})
