/**
 * Redis Cluster: three masters with a replica each (private redis-server
 * processes, `redis-cli --cluster create`), two gateway replicas on
 * REDIS_CLUSTER_NODES. Flows and refreshes work across the replicas, their
 * keys spread over the shards under the key prefix, and the rate limits
 * count on the cluster; grant storage lists page by page on it (one hash
 * slot); then the master holding the grants is SIGKILLed under load, its
 * replica takes over, and the failed node comes back as its replica (as an
 * orchestrator restarts it): every request answered with success or a proper 503,
 * the window printed, served again without a restart, no code redeemed
 * twice, no acknowledged grant or revocation lost.
 */
import t from 'tap'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-connection.ts'
import { RedisGrantStorage } from '../../gateway/state/redis-grant-storage.ts'
import { failoverLoad, failureCauses, grantWriter } from '../support/failover-load.ts'
import { grantRecord } from '../support/grant-fixture.ts'
import { ask, info, startRedisCluster, until } from '../support/redis.ts'
import { register, startCluster, type Replica } from '../support/replicas.ts'

const GENEROUS = { perIp: { max: 100_000 }, perClient: { max: 100_000 } }

t.test('Redis Cluster: flows across replicas, listings, and a master failed over under load', async (t) => {
  const redis = await startRedisCluster(t, { masters: 3, replicasPerMaster: 1 })
  // Rate limits on, counted on the cluster, but above what one test address sends.
  const cluster = await startCluster({
    replicas: 2,
    env: redis.env,
    config: (file) => ({ ...file, lifetimes: { codeRetrySeconds: 1 }, limits: { register: { perIp: { max: 100_000 } }, authorize: GENEROUS, token: GENEROUS } }),
  })
  t.teardown(() => cluster.close())
  const [a, b] = cluster.replicas as [Replica, Replica]
  for (const replica of [a, b]) {
    t.match(await replica.waitForLog((line) => line.msg === 'state is kept in Redis'), { mode: 'cluster', waitReplicas: 1 }, 'on the cluster, waiting for one replica')
  }
  const client = await register(a)
  const load = failoverLoad(cluster, client, [a, b], { workers: 2 })

  await t.test('flows and refreshes across the replicas; keys on every shard, under the prefix', async (t) => {
    await load.completeFlows(6)
    const perMaster = await Promise.all(
      redis.nodes.map(async (node) => {
        if ((await ask(node.port, 'ROLE'))[0] !== 'master') return undefined
        const [, keys] = (await ask(node.port, 'SCAN', 0, 'MATCH', `${cluster.keyPrefix}*`, 'COUNT', 10_000)) as [string, string[]]
        const stray = (await ask(node.port, 'DBSIZE')) as number
        return { keys: keys.length, stray: stray - keys.length }
      }),
    )
    const masters = perMaster.filter((entry) => entry !== undefined)
    t.equal(masters.length, 3)
    t.ok(masters.every((entry) => entry.keys > 0), `the flows' keys spread over every shard (${masters.map((entry) => entry.keys).join(', ')})`)
    t.same(masters.map((entry) => entry.stray), [0, 0, 0], 'every key is under the prefix')
  })

  // Grant storage on the cluster, as the gateway builds it, from the test process.
  const storageClient = createRedisClient({ connection: { mode: 'cluster', nodes: redis.nodes.map((node) => ({ host: '127.0.0.1', port: node.port })), tls: false }, keyPrefix: cluster.keyPrefix, commandTimeoutMs: 2000 })
  connectRedis(storageClient, { info() {}, warn() {} })
  t.teardown(() => storageClient.disconnect())
  await until('the storage connected', async () => (storageClient.status === 'ready') || undefined)
  const storage = new RedisGrantStorage(storageClient, { waitReplicas: 1, waitTimeoutMs: 250 })

  await t.test('grant listings page through the cluster', async (t) => {
    await storage.createGrants(Array.from({ length: 25 }, (_, n) => grantRecord(100_000 + n)))
    const seen: string[] = []
    let after: string | undefined
    for (let page = 0; page < 20; page++) {
      const found = await storage.listGrants({}, 10, after)
      seen.push(...found.items.map((grant) => grant.grantId))
      after = found.last
      if (after === undefined) break
    }
    const ours = (ids: string[]) => ids.filter((id) => id.startsWith('g_00100'))
    t.equal(ours(seen).length, 25, 'every grant written here, ten at a time (beside the grants of the flows above)')
    t.equal(new Set(seen).size, seen.length, 'none twice')
    t.ok(seen.length > 25, `the flows' own grants are listed too (${seen.length - 25})`)
    t.equal(ours((await storage.listGrants({ userId: 'alice' }, 100)).items.map((grant) => grant.grantId)).length, 13, 'by user')
    t.ok((await storage.listClients(10)).items.some((entry) => entry.clientId === client.client_id), 'the client the flows used is in the client list')
  })

  await t.test('the master holding the grants is killed under load', async (t) => {
    const writer = grantWriter(storage)
    let killedAt = 0
    let answers
    try {
      await load.warm(2)
      const former = await redis.masterFor('{grants}')
      killedAt = Date.now()
      await redis.kill(former)
      const promoted = await redis.promoted('{grants}', former)
      t.comment(`the replica 127.0.0.1:${promoted} took over from 127.0.0.1:${former} ${Date.now() - killedAt} ms after the kill`)
      // The shard has no replica left for its durable writes to wait for: the failed node comes back (as an orchestrator
      // restarts it) and joins as the new master's replica. Until then that shard's durable writes answer 503.
      await redis.restart(former)
      await until('the failed node is the new master\'s replica', async () => (await info(former, 'replication')).master_link_status === 'up' || undefined)
      // A returning replica syncs after repl-diskless-sync-delay (5 s by default): until then WAIT has no one to count.
      t.comment(`the failed node is back, in sync as a replica, ${Date.now() - killedAt} ms after the kill`)
      answers = await load.untilServedAgain(killedAt)
    } finally {
      await writer.stop()
    }
    load.report(t, answers, killedAt)
    t.comment(`the 503s' causes: ${failureCauses([a, b], killedAt)}`)

    for (const replica of [a, b]) t.equal((await fetch(`${replica.url}/readyz`)).status, 200, `${replica.url} is ready`)
    t.equal((await load.completeFlows(2)).length, 2, 'complete flows succeed again, without a restart')
    const replays = await load.replayCodes(1)
    t.same(replays.filter((replay) => !(replay.status === 400 && replay.error === 'invalid_grant')), [], `each of ${replays.length} codes, replayed once, is invalid_grant`)
    t.ok(writer.acknowledged.grants.some((entry) => entry.at < killedAt), `grants acknowledged before the kill: ${writer.acknowledged.grants.filter((entry) => entry.at < killedAt).length}; ${writer.refused} writes refused during the failover`)
    t.same(await writer.lost(), { grants: [], revocations: [] }, 'no acknowledged grant or revocation is lost')
    const metrics = await Promise.all([a, b].map(async (replica) => (await fetch(`${replica.url}/metrics`)).text()))
    t.ok(metrics.some((text) => /^oauth_gateway_redis_failovers_total [1-9]/m.test(text)), 'a replica counted the failover')
  })
})
