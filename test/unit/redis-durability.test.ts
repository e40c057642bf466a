/**
 * Durable writes and readiness on real replication (private redis-server
 * processes on free ports): a durable write returns once a replica holds it
 * (WAIT) and fails with StoreUnavailable when none acknowledges in time, a
 * lock so refused is taken back; the grant storage's writes wait the same
 * way; a node that answers as a replica (a demoted master) is not ready.
 */
import t, { type Test } from 'tap'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-connection.ts'
import { RedisGrantStorage } from '../../gateway/state/redis-grant-storage.ts'
import { RedisStore, type RedisErrorKind } from '../../gateway/state/redis-store.ts'
import { StoreUnavailable } from '../../gateway/state/store.ts'
import { grantRecord, revocationOf } from '../support/grant-fixture.ts'
import { ask, randomPrefix, startReplicationGroup, until, type PrivateRedis } from '../support/redis.ts'

const silent = { info() {}, warn() {} }
const WAIT_MS = 200

function storeOn(t: Test, node: PrivateRedis, options: { waitReplicas?: number; keyPrefix?: string } = {}) {
  const client = createRedisClient({ connection: { mode: 'single', url: node.url, tls: false }, keyPrefix: options.keyPrefix ?? randomPrefix(), commandTimeoutMs: 1000 })
  connectRedis(client, silent)
  const failures: RedisErrorKind[] = []
  const store = new RedisStore(client, { waitReplicas: options.waitReplicas ?? 1, waitTimeoutMs: WAIT_MS, observe: (_command, _seconds, failure) => failure && failures.push(failure) })
  t.teardown(() => store.close())
  return { client, store, failures }
}

const ready = (store: RedisStore) => until('the store is ready', async () => ((await store.notReadyBecause()) === undefined) || undefined)

t.test('a durable write returns once a replica holds it; with none acknowledging it fails, and a lock is taken back', async (t) => {
  const { master, replicas } = await startReplicationGroup(t, 1)
  const replica = replicas[0]!
  const prefix = randomPrefix()
  const { store, failures } = storeOn(t, master, { keyPrefix: prefix })
  await ready(store)

  t.equal(await store.setIfAbsent('code:{a}', 'running', 60, { durable: true }), true)
  // WAIT returned 1: the replica has the write now, not eventually.
  t.equal(await ask(replica.port, 'GET', `${prefix}code:{a}`), 'running', 'the replica holds the lock as soon as the write returns')
  t.equal(await store.setIfAbsent('code:{a}', 'again', 60, { durable: true }), false, 'a second taker still loses')
  await store.set('grant:{b}', 'x', 60, { durable: true })
  t.equal(await ask(replica.port, 'GET', `${prefix}grant:{b}`), 'x')

  failures.length = 0
  replica.pause()
  t.teardown(() => replica.resume())
  const started = Date.now()
  const refused = await store.setIfAbsent('code:{c}', 'running', 60, { durable: true }).catch((err: unknown) => err)
  t.type(refused, StoreUnavailable, 'no replica acknowledged: the write is not reported done')
  t.match((refused as Error).message, /only 0 of 1 replicas acknowledged the write within 200 ms/)
  t.ok(Date.now() - started < 1000, 'within about redis.waitTimeoutMs, not the command timeout')
  t.equal(await ask(master.port, 'GET', `${prefix}code:{c}`), null, 'the lock was taken back, so a retry can take it once the replica is back')
  t.same(failures, ['replication'], 'counted as a replication failure')
  t.equal(await store.setIfAbsent('mark:{d}', '1', 60), true, 'writes that need no replica go on')
  await t.rejects(store.delete('grant:{b}', { durable: true }), StoreUnavailable, 'a durable delete waits too')

  replica.resume()
  await until('the replica caught up', async () => (await ask(replica.port, 'GET', `${prefix}mark:{d}`)) === '1' || undefined)
  t.equal(await store.setIfAbsent('code:{c}', 'running', 60, { durable: true }), true, 'the retry takes the lock')
})

t.test('waitReplicas 0: no WAIT, no replica needed', async (t) => {
  const { master, replicas } = await startReplicationGroup(t, 1)
  replicas[0]!.pause()
  t.teardown(() => replicas[0]!.resume())
  const { store } = storeOn(t, master, { waitReplicas: 0 })
  await ready(store)
  t.equal(await store.setIfAbsent('code:{a}', 'running', 60, { durable: true }), true)
})

t.test('grant storage: every write waits for the replica; none acknowledging fails it', async (t) => {
  const { master, replicas } = await startReplicationGroup(t, 1)
  const replica = replicas[0]!
  const prefix = randomPrefix()
  const { client, store } = storeOn(t, master, { keyPrefix: prefix })
  await ready(store)
  const observed: string[] = []
  const storage = new RedisGrantStorage(client, { waitReplicas: 1, waitTimeoutMs: WAIT_MS, observe: (command, _seconds, failure) => observed.push(`${command} ${failure ?? 'ok'}`) })
  const now = Math.floor(Date.now() / 1000)
  const grant = grantRecord(1)
  await storage.createGrant(grant)
  t.match(await ask(replica.port, 'HGET', `${prefix}{grants}:grant:g_00000001`, 'r'), /g_00000001/, 'the replica holds the grant when createGrant returns')
  await storage.addRevocations([revocationOf('g_0')])
  t.ok(await ask(replica.port, 'GET', `${prefix}{grants}:rev:grant:g_0`), 'and the revocation')

  replica.pause()
  t.teardown(() => replica.resume())
  const block = { blockId: 'b_1', kind: 'client_id', value: 'client-1', reason: 'abuse', createdAt: now } as any
  await t.rejects(storage.addBlock(block), { name: 'StoreUnavailable', message: /only 0 of 1 replicas acknowledged/ }, 'a block no replica holds is not reported done')
  t.equal(await storage.getGrant('g_00000001').then((found) => found?.grantId), 'g_00000001', 'reads go on')
  // A refresh: the upstream has rotated its token already, so the update stands on the master alone.
  const before = observed.length
  t.equal(await storage.updateGrant({ ...grant, generation: 1, refreshCount: 1 }, 0), true, 'a refresh\'s update is not failed by a short WAIT')
  t.same(observed.slice(before), ['grant-write replication'], 'measured once, as a replication failure')
  t.match(await ask(master.port, 'HGET', `${prefix}{grants}:grant:g_00000001`, 'r'), /"refreshCount":1/, 'the master holds it')
  await t.rejects(storage.createGrant(grantRecord(2)), { name: 'StoreUnavailable', message: /only 0 of 1 replicas acknowledged/ }, 'a new grant still fails')
  await t.rejects(storage.endGrant('g_00000001', () => []), { name: 'StoreUnavailable', message: /only 0 of 1 replicas acknowledged/ }, 'and so does ending one')
})

t.test('readiness: a node that answers as a replica is not ready (a demoted master)', async (t) => {
  const { master, replicas } = await startReplicationGroup(t, 1)
  const onReplica = storeOn(t, replicas[0]!)
  await until('connected', async () => (onReplica.client.status === 'ready') || undefined)
  t.equal(await onReplica.store.notReadyBecause(), 'the state store is read-only: Redis answers as a replica (a demoted master?)')
  await t.rejects(onReplica.store.set('x', 'y', 60), { name: 'StoreUnavailable', message: /READONLY/ }, 'and it refuses writes')
  t.same(onReplica.failures, ['readonly'])

  const onMaster = storeOn(t, master)
  await ready(onMaster.store)
  // The master is demoted under the connection: what a failover does to the old master when it comes back.
  await ask(master.port, 'REPLICAOF', '127.0.0.1', String(replicas[0]!.port))
  t.match(await onMaster.store.notReadyBecause(), /read-only/, 'the demoted master is taken out of the load balancer')
  await ask(master.port, 'REPLICAOF', 'NO', 'ONE')
  await ready(onMaster.store)
})
