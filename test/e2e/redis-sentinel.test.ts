/**
 * A Sentinel failover under load: a master, two replicas and three
 * sentinels (private redis-server processes on free ports), two gateway
 * replicas on REDIS_SENTINELS. Complete flows and refreshes run while the
 * master is SIGKILLed and a sentinel promotes a replica. Every request is
 * answered, with success or 503 temporarily_unavailable (JSON with
 * Retry-After on /token, the page in the browser); the 503 window is
 * measured and printed; afterwards both replicas serve again without a
 * restart; no code is redeemed twice (each is replayed once after the
 * failover); and every grant and revocation whose write was acknowledged
 * before the kill (grant storage on the same Sentinel group, waiting for a
 * replica) is still there after it.
 */
import t from 'tap'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-connection.ts'
import { RedisGrantStorage } from '../../gateway/state/redis-grant-storage.ts'
import { until, startSentinelGroup } from '../support/redis.ts'
import { startCluster, register, type Replica } from '../support/replicas.ts'
import { failoverLoad, failureCauses, grantWriter } from '../support/failover-load.ts'

t.test('Sentinel: the master killed under load; 503 for the window, then served again, nothing redeemed twice, nothing acknowledged lost', async (t) => {
  const group = await startSentinelGroup(t, { replicas: 2 })
  // Codes answered again only within 1 s: the replays after the failover must meet the spent mark, not the remembered answer.
  // Rate limits off: the load comes from one address, faster than any person signs in.
  const cluster = await startCluster({ replicas: 2, env: group.env, config: (file) => ({ ...file, lifetimes: { codeRetrySeconds: 1 }, limits: { enabled: false } }) })
  t.teardown(() => cluster.close())
  const [a, b] = cluster.replicas as [Replica, Replica]
  for (const replica of [a, b]) {
    t.match(await replica.waitForLog((line) => line.msg === 'state is kept in Redis'), { mode: 'sentinel', waitReplicas: 1 }, 'on Sentinel, waiting for one replica')
  }
  const client = await register(a)

  // Grants and revocations written through the Sentinel group the whole time; the acknowledged ones are kept.
  const storageClient = createRedisClient({ connection: { mode: 'sentinel', sentinels: group.sentinelPorts.map((port) => ({ host: '127.0.0.1', port })), masterName: group.masterName, tls: false }, keyPrefix: cluster.keyPrefix, commandTimeoutMs: 2000 })
  connectRedis(storageClient, { info() {}, warn() {} })
  const storage = new RedisGrantStorage(storageClient, { waitReplicas: 1, waitTimeoutMs: 250 })
  t.teardown(() => storageClient.disconnect())
  await until('the storage connected', async () => (storageClient.status === 'ready') || undefined)
  const writer = grantWriter(storage)

  const load = failoverLoad(cluster, client, [a, b], { workers: 3 })
  let killedAt: number
  let answers
  try {
    await load.warm(4)
    killedAt = Date.now()
    const formerMaster = await group.killMaster()
    const promoted = await group.promoted(formerMaster)
    t.comment(`Sentinel promoted 127.0.0.1:${promoted} ${Date.now() - killedAt} ms after the master (127.0.0.1:${formerMaster}) was killed`)
    answers = await load.untilServedAgain(killedAt)
  } finally {
    await writer.stop()
  }

  const window = load.report(t, answers, killedAt)
  t.comment(`the 503s' causes: ${failureCauses([a, b], killedAt)}`)
  t.ok(window.unavailable > 0 || window.served > 0, 'requests ran through the failover')

  await t.test('both replicas serve again, without a restart', async (t) => {
    for (const replica of [a, b]) {
      const ready = await fetch(`${replica.url}/readyz`)
      t.equal(ready.status, 200, `${replica.url} is ready`)
    }
    const flows = await load.completeFlows(2)
    t.equal(flows.length, 2, 'complete flows succeed again')
  })

  await t.test('no code is redeemed twice: each, replayed once after the failover, is refused', async (t) => {
    const replays = await load.replayCodes(1)
    t.ok(replays.length >= 4, `${replays.length} codes replayed`)
    t.same(replays.filter((replay) => !(replay.status === 400 && replay.error === 'invalid_grant')), [], 'every replay is invalid_grant')
  })

  await t.test('every grant and revocation acknowledged before the kill is still there', async (t) => {
    const before = writer.acknowledged.grants.filter((entry) => entry.at < killedAt).length
    t.ok(before > 0, `${before} grants acknowledged before the kill, ${writer.acknowledged.grants.length} in all (${writer.refused} writes refused during the failover)`)
    t.same(await writer.lost(), { grants: [], revocations: [] }, 'no acknowledged grant or revocation is lost')
  })

  await t.test('metrics tell the failover', async (t) => {
    const texts = await Promise.all([a, b].map(async (replica) => (await fetch(`${replica.url}/metrics`)).text()))
    const count = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'm').exec(text)?.[1] ?? 0)
    for (const text of texts) {
      t.ok(count(text, 'oauth_gateway_redis_failovers_total') >= 1, 'a failover seen')
      t.ok(count(text, 'oauth_gateway_redis_reconnects_total') >= 1, 'a reconnect')
      t.match(text, /oauth_gateway_redis_command_duration_seconds_count\{command="set",outcome="ok"\} \d+/, 'command latency')
    }
  })
})

