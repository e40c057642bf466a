/**
 * What a complete flow and a refresh cost in Redis, in each mode: one
 * gateway replica on one node, on Sentinel (master and two replicas), and on
 * a cluster (three masters, a replica each); every command the gateway sends
 * is read off the data nodes with MONITOR and counted per flow and per
 * refresh. The modes send the same commands, except the WAIT of the code's
 * durable spent mark where there are replicas to wait for, and it rides in
 * the same pipeline as its write (no extra round trip). Nothing scans the
 * keyspace. The figures are printed for docs/redis.md.
 */
import t from 'tap'
import { Redis } from 'ioredis'
import { failureCauses } from '../support/failover-load.ts'
import { ask, startPrivateRedis, startRedisCluster, startSentinelGroup } from '../support/redis.ts'
import { completeFlow, refresh, register, startCluster, type Cluster, type Replica } from '../support/replicas.ts'

const FLOWS = 4
const REFRESHES = 4

/** Every command with a key under `prefix` (and WAIT, which has none) that reaches the nodes on `ports`. */
async function monitor(t: { teardown: (fn: () => unknown) => void }, ports: number[], prefix: string) {
  const seen: string[][] = []
  for (const port of ports) {
    const base = new Redis(port, '127.0.0.1')
    base.on('error', () => {})
    const client = await base.monitor()
    client.on('error', () => {})
    t.teardown(() => {
      client.disconnect()
      base.disconnect()
    })
    client.on('monitor', (_time: string, args: string[], source: string) => {
      // What a script runs inside Redis is no command of the gateway's: only the EVALSHA that ran it is.
      if (source === 'lua') return
      const name = args[0]!.toLowerCase()
      if (name === 'wait' || args.slice(1).some((arg) => arg.startsWith(prefix))) seen.push(args)
    })
  }
  // MONITOR lines arrive a moment after the command: let a marker command go round.
  const settle = async () => {
    const marker = `${prefix}marker:${Math.random()}`
    // ECHO: keyless, so any node of a cluster answers it.
    await ask(ports[0]!, 'ECHO', marker)
    const deadline = Date.now() + 5000
    while (!seen.some((args) => args[1] === marker) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    seen.splice(seen.findIndex((args) => args[1] === marker), 1)
  }
  return {
    async take(): Promise<string[][]> {
      await settle()
      return seen.splice(0)
    },
  }
}

interface Cost {
  perFlow: Record<string, number>
  perRefresh: Record<string, number>
}

function tally(commands: string[][], per: number): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const [name] of commands) counts[name!.toLowerCase()] = (counts[name!.toLowerCase()] ?? 0) + 1
  return Object.fromEntries(Object.entries(counts).sort().map(([name, count]) => [name, count / per]))
}

async function measure(t: { teardown: (fn: () => unknown) => void }, redisEnv: Record<string, string>, ports: number[]): Promise<Cost> {
  // A generous command timeout (WAIT gets half): the figures are counts, and a loaded machine must not turn them into 503s.
  const cluster: Cluster = await startCluster({ replicas: 1, env: redisEnv, config: (file) => ({ ...file, redis: { ...file.redis, commandTimeoutMs: 3000 }, lifetimes: { codeRetrySeconds: 1 } }) })
  try {
    return await measureOn(t, cluster, ports)
  } finally {
    await cluster.close()
  }
}

async function measureOn(t: { teardown: (fn: () => unknown) => void }, cluster: Cluster, ports: number[]): Promise<Cost> {
  const [replica] = cluster.replicas as [Replica]
  const client = await register(replica)
  const steps = { authorize: replica, callback: replica, token: replica }
  const watch = await monitor(t, ports, cluster.keyPrefix)
  // The first flow loads the rate limits' scripts (EVALSHA, then EVAL once): not counted.
  await completeFlow(cluster, client, steps)
  await watch.take()

  let refreshToken = ''
  for (let i = 0; i < FLOWS; i++) {
    const response = await completeFlow(cluster, client, steps)
    if (response.status !== 200) throw new Error(`a flow failed: ${response.status} ${await response.text()}: ${failureCauses([replica], 0)}`)
    refreshToken = ((await response.json()) as { refresh_token: string }).refresh_token
  }
  const perFlow = tally(await watch.take(), FLOWS)
  for (let i = 0; i < REFRESHES; i++) {
    const response = await refresh(replica, client, refreshToken)
    if (response.status !== 200) throw new Error(`a refresh failed: ${response.status} ${await response.text()}: ${failureCauses([replica], 0)}`)
    refreshToken = ((await response.json()) as { refresh_token: string }).refresh_token
  }
  const perRefresh = tally(await watch.take(), REFRESHES)
  return { perFlow, perRefresh }
}

const sum = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)
const describe = (counts: Record<string, number>) => `${sum(counts)} commands, ${sum(counts) - (counts.wait ?? 0)} round trips (${Object.entries(counts).map(([name, count]) => `${name} ${count}`).join(', ')})`
const withoutWait = ({ wait: _wait, ...rest }: Record<string, number>) => rest

t.test('Redis commands and round trips per complete flow and per refresh, in each mode', async (t) => {
  // The three modes side by side: their processes and ports are apart, and each is counted on its own nodes.
  const [single, sentinel, cluster] = await Promise.all([startPrivateRedis(t), startSentinelGroup(t, { replicas: 2 }), startRedisCluster(t, { masters: 3, replicasPerMaster: 1 })])
  const masters = (await Promise.all(cluster.nodes.map(async (node) => ((await ask(node.port, 'ROLE'))[0] === 'master' ? node.port : undefined)))).filter((port) => port !== undefined)
  const [onSingle, onSentinel, onCluster] = await Promise.all([
    measure(t, { REDIS_URL: single.url }, [single.port]),
    sentinel.masterPort().then((port) => measure(t, sentinel.env, [port])),
    measure(t, cluster.env, masters),
  ])
  const costs: Record<string, Cost> = { single: onSingle, sentinel: onSentinel, cluster: onCluster }

  for (const [mode, cost] of Object.entries(costs)) {
    t.comment(`${mode}: per flow ${describe(cost.perFlow)}; per refresh ${describe(cost.perRefresh)}`)
  }
  t.equal(costs.single!.perFlow.wait, undefined, 'one node: nothing to wait for')
  for (const mode of ['sentinel', 'cluster']) {
    t.equal(costs[mode]!.perFlow.wait, 1, `${mode}: one WAIT per flow, for the code's spent mark`)
    t.equal(costs[mode]!.perRefresh.wait, undefined, `${mode}: a refresh writes nothing durable`)
    t.same(withoutWait(costs[mode]!.perFlow), costs.single!.perFlow, `${mode}: otherwise the same commands per flow as one node`)
    t.same(costs[mode]!.perRefresh, costs.single!.perRefresh, `${mode}: and per refresh`)
  }
  for (const cost of Object.values(costs)) {
    t.notOk(['keys', 'scan'].some((name) => name in cost.perFlow || name in cost.perRefresh), 'nothing scans the keyspace')
    t.ok(Number.isInteger(sum(cost.perFlow)) && Number.isInteger(sum(cost.perRefresh)), 'every flow and every refresh costs the same')
  }
})
