/**
 * Redis as the gateway uses it, when the environment names one (REDIS_URL,
 * REDIS_SENTINELS or REDIS_CLUSTER_NODES, read as the gateway reads them):
 * which mode and which node is master, whether it takes writes, its
 * replicas and their lag against redis.waitReplicas, and persistence: with
 * Redis, grants, blocks and revocations live there, so AOF off is a warning.
 * Only read-only commands (ROLE, INFO, CLUSTER INFO): nothing is written.
 */
import { Cluster, type Redis } from 'ioredis'
import type { RedisConnection } from '../config/schema.ts'
import { createRedisClient, type RedisClient } from '../state/redis-connection.ts'
import type { Report } from './report.ts'

export interface RedisCheckOptions {
  connection: RedisConnection
  keyPrefix: string
  /** config redis.waitReplicas, settled for the mode. */
  waitReplicas: number
  timeoutMs: number
}

type Fields = Record<string, string>

function fields(text: string): Fields {
  return Object.fromEntries(
    text
      .split('\r\n')
      .filter((line) => line.includes(':') && !line.startsWith('#'))
      .map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]),
  )
}

/** One master as INFO tells it: its replicas, their lag, its persistence. */
interface MasterView {
  address: string
  role: string
  replicas: Array<{ address: string; state: string; lagBytes: number; lagSeconds: number }>
  aof: boolean
}

async function viewOf(node: Redis, address: string): Promise<MasterView> {
  const replication = fields(String(await node.info('replication')))
  const persistence = fields(String(await node.info('persistence')))
  const offset = Number(replication.master_repl_offset ?? 0)
  const replicas = Object.entries(replication)
    .filter(([name]) => /^slave\d+$/.test(name))
    .map(([, value]) => {
      const entry = Object.fromEntries(value.split(',').map((pair) => pair.split('=') as [string, string]))
      return { address: `${entry.ip}:${entry.port}`, state: entry.state ?? 'unknown', lagBytes: Math.max(0, offset - Number(entry.offset ?? 0)), lagSeconds: Number(entry.lag ?? 0) }
    })
  return { address, role: replication.role ?? 'unknown', replicas, aof: persistence.aof_enabled === '1' }
}

const MODE_NAMES = { single: 'one node (REDIS_URL)', sentinel: 'Sentinel (REDIS_SENTINELS)', cluster: 'Cluster (REDIS_CLUSTER_NODES)' } as const

function connected(client: RedisClient, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs)
    let last: Error | undefined
    client.on('error', (err: Error) => (last = err))
    client.once('ready', () => (clearTimeout(timer), resolve()))
    client.connect().catch((err: Error) => {
      clearTimeout(timer)
      reject(last ?? err)
    })
  })
}

export async function checkRedis(report: Report, options: RedisCheckOptions): Promise<void> {
  const { connection } = options
  const client = createRedisClient({ connection, keyPrefix: options.keyPrefix, commandTimeoutMs: options.timeoutMs })
  try {
    try {
      await connected(client, options.timeoutMs)
    } catch (err) {
      report.fail('redis', `${MODE_NAMES[connection.mode]}: cannot connect: ${(err as Error).message}`, connection.tls
        ? 'check the addresses, REDIS_PASSWORD / REDIS_USERNAME, and that REDIS_CA_FILE holds the CA that signed the nodes\' certificates'
        : 'check the addresses and REDIS_PASSWORD / REDIS_USERNAME; the gateway answers 503 while Redis cannot be reached')
      return
    }
    const masters = client instanceof Cluster
      ? await Promise.all(client.nodes('master').map((node) => viewOf(node, `${node.options.host}:${node.options.port}`)))
      : [await viewOf(client, `${client.stream?.remoteAddress}:${client.stream?.remotePort}`)]

    if (client instanceof Cluster) {
      const state = /cluster_state:(\w+)/.exec(String(await client.cluster('INFO')))?.[1]
      const detail = `${MODE_NAMES.cluster}: ${masters.length} masters (${masters.map((master) => master.address).join(', ')}), cluster_state:${state}${connection.tls ? ', TLS' : ''}`
      if (state === 'ok') report.pass('redis', detail)
      else report.fail('redis', detail, 'some slots have no master that answers: the gateway answers 503 for their keys; bring the failed nodes back or fail them over')
    } else {
      const [master] = masters as [MasterView]
      const where = connection.mode === 'sentinel' ? `master "${connection.masterName}" at ${master.address}, named by ${connection.sentinels.length} sentinels` : `at ${master.address}`
      const detail = `${MODE_NAMES[connection.mode]}: ${where}${connection.tls ? ', TLS' : ''}`
      if (master.role === 'master') report.pass('redis', detail)
      else report.fail('redis', `${detail} answers as ${master.role}: it refuses writes (READONLY) and /readyz says not ready`, connection.mode === 'single' ? 'point REDIS_URL at the current master, or use REDIS_SENTINELS so the gateway follows failovers' : 'the sentinels name a node that is not master: check the sentinels\' view (SENTINEL MASTERS)')
    }

    const fewest = Math.min(...masters.map((master) => master.replicas.filter((replica) => replica.state === 'online').length))
    const lag = masters.flatMap((master) => master.replicas).reduce((most, replica) => ({ bytes: Math.max(most.bytes, replica.lagBytes), seconds: Math.max(most.seconds, replica.lagSeconds) }), { bytes: 0, seconds: 0 })
    const replication = `${masters.map((master) => `${master.address}: ${master.replicas.length ? master.replicas.map((replica) => `${replica.address} ${replica.state}`).join(', ') : 'no replica'}`).join('; ')}; most lag ${lag.bytes} bytes, ${lag.seconds} s; redis.waitReplicas ${options.waitReplicas}`
    if (fewest < options.waitReplicas) {
      report.fail('redis replication', replication, `durable writes (code exchanges, grants, revocations, blocks) answer 503 while a master has fewer than redis.waitReplicas (${options.waitReplicas}) replicas online: add replicas, or lower redis.waitReplicas (0 turns the wait off, and a failover may then forget the last writes)`)
    } else if (options.waitReplicas > 0 && fewest === options.waitReplicas) {
      report.warn('redis replication', replication, `a master has exactly redis.waitReplicas replicas: after its failover (its replica promoted) durable writes answer 503 until another replica is back; run one replica more than redis.waitReplicas`)
    } else if (options.waitReplicas === 0 && connection.mode !== 'single') {
      report.warn('redis replication', replication, 'redis.waitReplicas is 0: a failover may forget the last grants, revocations and blocks; set it to 1')
    } else report.pass('redis replication', replication)

    const withoutAof = masters.filter((master) => !master.aof).map((master) => master.address)
    if (withoutAof.length) {
      report.warn('redis persistence', `AOF is off on ${withoutAof.join(', ')}: grants, blocks and revocations kept there are lost when Redis restarts empty`, 'appendonly yes (in redis.conf, or CONFIG SET appendonly yes on every node, replicas too); appendfsync everysec')
    } else report.pass('redis persistence', `AOF on at every master (${masters.map((master) => master.address).join(', ')})`)
  } catch (err) {
    report.fail('redis', `${MODE_NAMES[connection.mode]}: ${(err as Error).message}`, 'the gateway needs ROLE and INFO to answer; check the user\'s ACL')
  } finally {
    client.disconnect()
  }
}
