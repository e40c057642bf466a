/**
 * The doctor's Redis checks against real servers (private redis-server
 * processes on free ports): the mode and the master, a node that answers as
 * a replica, replicas against redis.waitReplicas with their lag, and AOF.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { RedisConnection } from '../../gateway/config/schema.ts'
import { checkRedis } from '../../gateway/doctor/redis.ts'
import { Report, type CheckResult } from '../../gateway/doctor/report.ts'
import { startPrivateRedis, startRedisCluster, startReplicationGroup, startSentinelGroup } from '../support/redis.ts'

async function doctor(connection: RedisConnection, waitReplicas: number): Promise<Record<string, CheckResult>> {
  const report = new Report()
  await checkRedis(report, { connection, keyPrefix: 'doctor:', waitReplicas, timeoutMs: 2000 })
  return Object.fromEntries(report.results.map((result) => [result.name, result]))
}
const single = (port: number): RedisConnection => ({ mode: 'single', url: `redis://127.0.0.1:${port}`, tls: false })

t.test('one node with a replica, AOF off: the master named, replication and persistence warned about', async (t) => {
  const { master, replicas } = await startReplicationGroup(t, 1)
  const results = await doctor(single(master.port), 1)
  t.match(results.redis, { status: 'pass', detail: `one node (REDIS_URL): at 127.0.0.1:${master.port}` })
  t.match(results['redis replication'], { status: 'warn', detail: new RegExp(`127\\.0\\.0\\.1:${replicas[0]!.port} online; most lag \\d+ bytes, \\d+ s; redis.waitReplicas 1`), fix: /run one replica more than redis.waitReplicas/ })
  t.match(results['redis persistence'], { status: 'warn', detail: /AOF is off on 127\.0\.0\.1:\d+: grants, blocks and revocations kept there are lost/, fix: /appendonly yes/ })
  t.match((await doctor(single(master.port), 2))['redis replication'], { status: 'fail', fix: /fewer than redis.waitReplicas \(2\) replicas online/ }, 'more replicas asked for than there are: durable writes would fail')
  t.match((await doctor(single(replicas[0]!.port), 0)).redis, { status: 'fail', detail: /answers as slave: it refuses writes/, fix: /point REDIS_URL at the current master/ }, 'REDIS_URL at a replica')
})

t.test('AOF on, no wait: all pass', async (t) => {
  const directory = mkdtempSync(join(tmpdir(), 'doctor-aof-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const redis = await startPrivateRedis(t, { args: ['--appendonly', 'yes', '--dir', directory] })
  const results = await doctor(single(redis.port), 0)
  t.same(Object.values(results).map((result) => result.status), ['pass', 'pass', 'pass'])
  t.match(results['redis persistence']!.detail, /AOF on at every master/)
})

t.test('Sentinel: the master the sentinels name', async (t) => {
  const group = await startSentinelGroup(t)
  const results = await doctor({ mode: 'sentinel', sentinels: group.sentinelPorts.map((port) => ({ host: '127.0.0.1', port })), masterName: group.masterName, tls: false }, 1)
  t.match(results.redis, { status: 'pass', detail: `Sentinel (REDIS_SENTINELS): master "gateway" at 127.0.0.1:${await group.masterPort()}, named by 3 sentinels` })
})

t.test('Cluster without replicas: the masters, and durable writes that could not succeed', async (t) => {
  const cluster = await startRedisCluster(t, { masters: 3, replicasPerMaster: 0 })
  const results = await doctor({ mode: 'cluster', nodes: cluster.nodes.slice(0, 1).map((node) => ({ host: '127.0.0.1', port: node.port })), tls: false }, 1)
  t.match(results.redis, { status: 'pass', detail: /Cluster \(REDIS_CLUSTER_NODES\): 3 masters \(.*\), cluster_state:ok/ })
  t.match(results['redis replication'], { status: 'fail', detail: /no replica/ })
})

t.test('unreachable: a failure with the fix', async (t) => {
  const redis = await startPrivateRedis(t)
  await redis.stop()
  t.match((await doctor(single(redis.port), 0)).redis, { status: 'fail', detail: /one node \(REDIS_URL\): cannot connect/, fix: /check the addresses/ })
})
