/**
 * What a complete flow and a refresh cost in Redis, in each mode: one
 * gateway replica on one node, on Sentinel (master and two replicas), and on
 * a cluster (three masters, a replica each); every command the gateway sends
 * is read off the data nodes with MONITOR and counted per flow and per
 * refresh. The modes send the same commands, except the WAITs of durable
 * writes (the code's spent mark, the grant) where there are replicas to wait
 * for, and each rides in the same pipeline as its write (no extra round
 * trip); a transaction (MULTI … EXEC) is one round trip. Nothing scans the
 * keyspace. The figures are printed for docs/redis.md.
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import t from 'tap'
import { failureCauses } from '../support/failover-load.ts'
import { ask, startPrivateRedis, startRedisCluster, startSentinelGroup } from '../support/redis.ts'
import { completeFlow, refresh, register, startCluster, type Cluster, type Replica } from '../support/replicas.ts'

const FLOWS = 4
const REFRESHES = 4

/** A command as MONITOR shows it, and the connection it came from. */
interface Seen {
  args: string[]
  source: string
}

/**
 * Every command with a key under `prefix` (and WAIT, MULTI and EXEC, which
 * have none) that reaches the nodes on `ports`, except the replicas' own
 * polling of the block list (every second, whatever the traffic).
 */
async function monitor(t: { teardown: (fn: () => unknown) => void }, ports: number[], prefix: string) {
  const seen: Seen[] = []
  for (const port of ports) {
    // redis-cli rather than ioredis's monitor(): ioredis can take a MONITOR line that arrives in the
    // same packet as MONITOR's OK for a reply ("Command queue state error"), which a loaded machine provokes.
    const child = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'monitor'], { stdio: ['ignore', 'pipe', 'ignore'] })
    t.teardown(() => {
      child.kill()
    })
    const lines = createInterface({ input: child.stdout! })
    const started = new Promise<void>((resolve, reject) => {
      child.once('exit', () => reject(new Error(`redis-cli monitor on ${port} ended`)))
      lines.once('line', () => resolve())
    })
    lines.on('line', (line) => {
      // 1700000000.123456 [0 127.0.0.1:50000] "hgetall" "prefix{grants}:blocks"   ([0 lua] inside a script)
      const found = /^\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line)
      if (!found) return
      const source = found[1]!
      // What a script runs inside Redis is no command of the gateway's: only the EVALSHA that ran it is.
      if (source === 'lua') return
      const args = [...found[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((match) => match[1]!.replace(/\\(.)/g, '$1'))
      const name = args[0]!.toLowerCase()
      if (name === 'hgetall' && args[1] === `${prefix}{grants}:blocks`) return
      if (['wait', 'multi', 'exec'].includes(name) || args.slice(1).some((arg) => arg.startsWith(prefix))) seen.push({ args, source: `${port} ${source}` })
    })
    // redis-cli prints OK once the node monitors.
    await started
  }
  // MONITOR lines arrive a moment after the command: let a marker command go round.
  const settle = async () => {
    const marker = `${prefix}marker:${Math.random()}`
    // ECHO: keyless, so any node of a cluster answers it.
    await ask(ports[0]!, 'ECHO', marker)
    const deadline = Date.now() + 5000
    while (!seen.some((entry) => entry.args[1] === marker) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    seen.splice(seen.findIndex((entry) => entry.args[1] === marker), 1)
  }
  return {
    async take(): Promise<Seen[]> {
      await settle()
      return seen.splice(0)
    },
  }
}

interface Cost {
  perFlow: Tally
  perRefresh: Tally
}

interface Tally {
  /** Commands by name (a transaction's commands each, MULTI and EXEC not). */
  commands: Record<string, number>
  /** Round trips: a transaction (MULTI … EXEC) is one, and a WAIT rides in its write's pipeline. */
  roundTrips: number
}

function tally(seen: Seen[], per: number): Tally {
  const commands: Record<string, number> = {}
  const inTransaction = new Set<string>()
  let roundTrips = 0
  for (const { args, source } of seen) {
    const name = args[0]!.toLowerCase()
    if (name === 'multi') inTransaction.add(source)
    else if (name === 'exec') {
      inTransaction.delete(source)
      roundTrips++
    } else {
      commands[name] = (commands[name] ?? 0) + 1
      if (name !== 'wait' && !inTransaction.has(source)) roundTrips++
    }
  }
  return { commands: Object.fromEntries(Object.entries(commands).sort().map(([name, count]) => [name, count / per])), roundTrips: roundTrips / per }
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
const describe = (tally: Tally) => `${sum(tally.commands)} commands, ${tally.roundTrips} round trips (${Object.entries(tally.commands).map(([name, count]) => `${name} ${count}`).join(', ')})`
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
  t.equal(costs.single!.perFlow.commands.wait, undefined, 'one node: nothing to wait for')
  for (const mode of ['sentinel', 'cluster']) {
    const cost = costs[mode]!
    t.ok((cost.perFlow.commands.wait ?? 0) >= 1, `${mode}: a flow waits for replicas (the code's spent mark, the grant)`)
    t.same(withoutWait(cost.perFlow.commands), costs.single!.perFlow.commands, `${mode}: otherwise the same commands per flow as one node`)
    t.same(withoutWait(cost.perRefresh.commands), withoutWait(costs.single!.perRefresh.commands), `${mode}: and per refresh`)
    t.equal(cost.perFlow.roundTrips, costs.single!.perFlow.roundTrips, `${mode}: the WAITs add no round trip to a flow`)
    t.equal(cost.perRefresh.roundTrips, costs.single!.perRefresh.roundTrips, `${mode}: nor to a refresh`)
  }
  t.same(costs.sentinel!.perFlow.commands, costs.cluster!.perFlow.commands, 'Sentinel and Cluster send the same')
  for (const cost of Object.values(costs)) {
    t.notOk(['keys', 'scan'].some((name) => name in cost.perFlow.commands || name in cost.perRefresh.commands), 'nothing scans the keyspace')
    t.ok(Number.isInteger(cost.perFlow.roundTrips) && Number.isInteger(cost.perRefresh.roundTrips), 'every flow and every refresh costs the same')
  }
})
