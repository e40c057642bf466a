/**
 * Redis for tests: the shared server at 127.0.0.1:6379 with a random key
 * prefix per test (removed at teardown), or private redis-server processes
 * on free loopback ports for tests that stop, pause, restart or fail them
 * over, leaving 6379 alone: one server, a master with replicas, a Sentinel
 * group (master, replica, three sentinels), a Redis Cluster (over TLS too),
 * a TLS server with a CA made for the test.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Cluster, Redis } from 'ioredis'
import { freePort } from './ports.ts'

export const SHARED_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

export function randomPrefix(): string {
  return `test-${randomUUID().slice(0, 8)}:`
}

/** A plain client without a prefix, to look at what the gateway wrote. */
export function rawClient(url = SHARED_REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false })
}

/** Every key under `prefix` with its remaining TTL in milliseconds (-1: none). */
export async function keysWithTtl(client: Redis, prefix: string): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    for (const key of keys) found.set(key, await client.pttl(key))
  } while (cursor !== '0')
  return found
}

export async function deletePrefix(prefix: string, url = SHARED_REDIS_URL): Promise<void> {
  const client = rawClient(url)
  try {
    const keys = [...(await keysWithTtl(client, prefix)).keys()]
    if (keys.length) await client.del(...keys)
  } finally {
    client.disconnect()
  }
}

export interface PrivateRedis {
  port: number
  url: string
  /** SIGSTOP: the server holds connections open but answers nothing. */
  pause(): void
  resume(): void
  stop(): Promise<void>
  /** Starts again on the same port, empty (no persistence, like a Redis that lost its data). */
  start(): Promise<void>
  /** Whether its process is running. */
  running(): boolean
}

type Teardown = { teardown: (fn: () => unknown) => void }

export interface PrivateRedisOptions {
  /** More redis-server arguments, e.g. `--replicaof 127.0.0.1 <port>` or the TLS settings. */
  args?: string[]
  /** Already chosen, when other processes must be told the port first. */
  port?: number
  /** How to tell it answers: a plain PING on the port, unless the server speaks only TLS. */
  probe?: (port: number) => Promise<void>
}

/** A redis-server of its own on a free port, without persistence; stopped at teardown. */
export async function startPrivateRedis(t: Teardown, options: PrivateRedisOptions = {}): Promise<PrivateRedis> {
  const port = options.port ?? (await freePort())
  let child: ChildProcess | undefined

  // Its own directory: a replica's full sync writes an RDB file even without persistence, never into the repository.
  const directory = mkdtempSync(join(tmpdir(), 'redis-server-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', directory, ...(options.args ?? [])], { stdio: 'ignore' })
    await (options.probe ?? untilAnswering)(port)
  }
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await exited
  }

  t.teardown(stop)
  await start()
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    stop,
    start,
    running: () => child !== undefined && child.exitCode === null && child.signalCode === null,
  }
}

async function untilAnswering(port: number, within = 20_000) {
  const deadline = Date.now() + within
  for (;;) {
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    try {
      await probe.connect()
      if ((await probe.ping()) === 'PONG') return
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      probe.disconnect()
    }
  }
}

const run = promisify(execFile)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a value other than undefined, or throws after `within` ms naming `what`. */
export async function until<T>(what: string, check: () => Promise<T | undefined>, within = 30_000): Promise<T> {
  const deadline = Date.now() + within
  for (;;) {
    const value = await check().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${within} ms`)
    await sleep(100)
  }
}

/** One command on a fresh connection to 127.0.0.1:`port` (no prefix), then disconnect. */
export async function ask(port: number, ...command: [string, ...Array<string | number>]): Promise<any> {
  const client = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, commandTimeout: 2000 })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.call(...command)
  } finally {
    client.disconnect()
  }
}

/** `INFO section` as fields. */
export async function info(port: number, section: string): Promise<Record<string, string>> {
  const text = String(await ask(port, 'INFO', section))
  return Object.fromEntries(text.split('\r\n').filter((line) => line.includes(':')).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]))
}

export interface ReplicationGroup {
  master: PrivateRedis
  replicas: PrivateRedis[]
}

/** A master and `count` replicas (replicaof), once every replica's link is up. */
export async function startReplicationGroup(t: Teardown, count = 1, args: string[] = []): Promise<ReplicationGroup> {
  const master = await startPrivateRedis(t, { args })
  const replicas = await Promise.all(Array.from({ length: count }, () => startPrivateRedis(t, { args: [...args, '--replicaof', '127.0.0.1', String(master.port)] })))
  await until('the replicas are in sync', async () => ((await info(master.port, 'replication')).connected_slaves === String(count) && (await Promise.all(replicas.map(async (replica) => (await info(replica.port, 'replication')).master_link_status === 'up'))).every(Boolean)) || undefined)
  return { master, replicas }
}

export interface SentinelGroup {
  masterName: string
  /** The data nodes, in start order: the first starts as master. */
  nodes: PrivateRedis[]
  sentinelPorts: number[]
  /** REDIS_SENTINELS and REDIS_SENTINEL_MASTER for the gateway. */
  env: Record<string, string>
  /** The port the sentinels name as master now. */
  masterPort(): Promise<number>
  /** SIGKILLs the master and resolves with its port. */
  killMaster(): Promise<number>
  /** Resolves with the new master's port once the sentinels name another node than `formerPort` and it answers as master. */
  promoted(formerPort: number, within?: number): Promise<number>
}

/**
 * A master, `replicas` replicas (default 1) and three sentinels (quorum 2),
 * the sentinels' config files in a temporary directory (a sentinel rewrites
 * its own). The master is judged down after `downAfterMs` without an answer.
 */
export async function startSentinelGroup(t: Teardown, options: { replicas?: number; downAfterMs?: number; args?: string[] } = {}): Promise<SentinelGroup> {
  const masterName = 'gateway'
  const { master, replicas } = await startReplicationGroup(t, options.replicas ?? 1, options.args ?? [])
  const nodes = [master, ...replicas]
  const directory = mkdtempSync(join(tmpdir(), 'redis-sentinel-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const sentinelPorts = await Promise.all([0, 1, 2].map(() => freePort()))
  await Promise.all(sentinelPorts.map(async (port) => {
    const file = join(directory, `sentinel-${port}.conf`)
    writeFileSync(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${directory}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 1000}`,
      `sentinel failover-timeout ${masterName} 10000`,
      `sentinel parallel-syncs ${masterName} 1`,
      '',
    ].join('\n'))
    const child = spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' })
    t.teardown(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    })
    await untilAnswering(port)
  }))
  // Every sentinel knows the replica and the other sentinels before a failover can be agreed on.
  await until('the sentinels see the replica and each other', async () => {
    const views = await Promise.all(sentinelPorts.map(async (port) => {
      const [state] = (await ask(port, 'SENTINEL', 'MASTERS')) as string[][]
      const fields = Object.fromEntries(Array.from({ length: state!.length / 2 }, (_, i) => [state![2 * i], state![2 * i + 1]]))
      return fields['num-slaves'] === String(replicas.length) && fields['num-other-sentinels'] === '2'
    }))
    return views.every(Boolean) || undefined
  })
  const masterPort = async () => Number(((await ask(sentinelPorts[0]!, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as string[])[1])
  return {
    masterName,
    nodes,
    sentinelPorts,
    env: { REDIS_SENTINELS: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(','), REDIS_SENTINEL_MASTER: masterName },
    masterPort,
    async killMaster() {
      const port = await masterPort()
      await nodes.find((node) => node.port === port)!.stop()
      return port
    },
    promoted(formerPort, within = 30_000) {
      return until('a sentinel promoted the replica', async () => {
        const ports = await Promise.all(sentinelPorts.map((port) => ask(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName).then((answer: string[]) => Number(answer[1]))))
        const port = ports[0]!
        if (port === formerPort || ports.some((other) => other !== port)) return undefined
        return (await ask(port, 'ROLE'))[0] === 'master' ? port : undefined
      }, within)
    },
  }
}

export interface RedisCluster {
  nodes: PrivateRedis[]
  /** REDIS_CLUSTER_NODES for the gateway: every node as a seed. */
  env: Record<string, string>
  /** A client of the cluster (no prefix), disconnected at teardown. */
  client(): Cluster
  /** Resolves once every running node says cluster_state:ok (every slot served). */
  healthy(within?: number): Promise<void>
  /** The port of the master that serves `key`'s slot now. */
  masterFor(key: string): Promise<number>
  /** SIGKILLs the node on `port`. */
  kill(port: number): Promise<void>
  /** Starts the node on `port` again, with its cluster config file: it rejoins the cluster (a failed master as a replica). */
  restart(port: number): Promise<void>
  /** Resolves with the new master's port once `key`'s slot is served by another node than `formerPort`, and the cluster is healthy. */
  promoted(key: string, formerPort: number, within?: number): Promise<number>
}

export interface RedisClusterOptions {
  masters?: number
  replicasPerMaster?: number
  nodeTimeoutMs?: number
  /**
   * Every node also speaks TLS (the cluster bus and replication too) with these files, and announces
   * `hostname` rather than its address (`cluster-preferred-endpoint-type hostname`, as ElastiCache and
   * MemoryDB do with TLS on): `env` then names the TLS ports by `hostname`. The plain ports stay for
   * the test's own look at the nodes.
   */
  tls?: { files: TlsFiles; hostname: string }
}

/** `masters` masters with `replicasPerMaster` replicas each, made with `redis-cli --cluster create`. */
export async function startRedisCluster(t: Teardown, options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3
  const replicas = options.replicasPerMaster ?? 1
  const directory = mkdtempSync(join(tmpdir(), 'redis-cluster-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const { tls } = options
  const tlsPorts = new Map<number, number>()
  const nodes = await Promise.all(Array.from({ length: masters * (1 + replicas) }, async () => {
    const port = await freePort()
    const tlsPort = tls ? await freePort() : undefined
    if (tlsPort) tlsPorts.set(port, tlsPort)
    return startPrivateRedis(t, {
      port,
      args: [
        '--cluster-enabled', 'yes', '--cluster-config-file', join(directory, `nodes-${port}.conf`), '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1000), '--dir', directory,
        ...(tls ? [...tlsServerArgs(tls.files, tlsPort!), '--tls-cluster', 'yes', '--tls-replication', 'yes', '--cluster-announce-hostname', tls.hostname, '--cluster-preferred-endpoint-type', 'hostname'] : []),
      ],
    })
  }))
  // Over TLS when the nodes meet over TLS (their cluster bus listens beside the TLS port).
  const seeds = nodes.map((node) => `127.0.0.1:${tlsPorts.get(node.port) ?? node.port}`)
  await run('redis-cli', [...(tls ? ['--tls', '--cacert', tls.files.ca] : []), '--cluster', 'create', ...seeds, '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 60_000 })
  const healthy = async (within = 30_000) => {
    await until('the cluster is healthy', async () => {
      const alive = nodes.filter((node) => node.running())
      const states = await Promise.all(alive.map(async (node) => /cluster_state:ok/.test(String(await ask(node.port, 'CLUSTER', 'INFO')))))
      return states.every(Boolean) || undefined
    }, within)
  }
  await healthy()
  // Every replica in sync, so that a write that waits for one (WAIT) is acknowledged from the start.
  await until('the replicas are in sync', async () => {
    const links = await Promise.all(nodes.map(async (node) => {
      const replication = await info(node.port, 'replication')
      return replication.role === 'master' || replication.master_link_status === 'up'
    }))
    return links.every(Boolean) || undefined
  })
  const masterFor = async (key: string) => {
    const alive = nodes.filter((node) => node.running())
    const slot = Number(await ask(alive[0]!.port, 'CLUSTER', 'KEYSLOT', key))
    const ranges = (await ask(alive[0]!.port, 'CLUSTER', 'SLOTS')) as Array<[number, number, [string, number, ...unknown[]], ...unknown[]]>
    const range = ranges.find(([start, end]) => start <= slot && slot <= end)
    if (!range) throw new Error(`no node serves slot ${slot}`)
    return Number(range[2][1])
  }
  return {
    nodes,
    masterFor,
    async kill(port) {
      await nodes.find((node) => node.port === port)!.stop()
    },
    async restart(port) {
      await nodes.find((node) => node.port === port)!.start()
    },
    async promoted(key, formerPort, within = 30_000) {
      const port = await until(`a replica took over ${key}'s slot`, async () => {
        const port = await masterFor(key)
        return port === formerPort ? undefined : port
      }, within)
      await healthy(within)
      return port
    },
    env: { REDIS_CLUSTER_NODES: nodes.map((node) => (tls ? `${tls.hostname}:${tlsPorts.get(node.port)}` : `127.0.0.1:${node.port}`)).join(',') },
    client() {
      const client = new Cluster(nodes.filter((node) => node.running()).map((node) => ({ host: '127.0.0.1', port: node.port })), { redisOptions: { maxRetriesPerRequest: 1 } })
      client.on('error', () => {})
      t.teardown(() => client.disconnect())
      return client
    },
    healthy,
  }
}

export interface TlsFiles {
  directory: string
  /** The CA that signed the server's certificate. */
  ca: string
  /** Another CA, which signed nothing the server shows. */
  otherCa: string
  cert: string
  key: string
}

/** A CA, another CA, and a certificate for `names` (subjectAltName entries; default 127.0.0.1 and localhost) signed by the first (openssl). */
export async function makeTlsFiles(t: Teardown, names = ['IP:127.0.0.1', 'DNS:localhost']): Promise<TlsFiles> {
  const directory = mkdtempSync(join(tmpdir(), 'redis-tls-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const file = (name: string) => join(directory, name)
  const openssl = (...args: string[]) => run('openssl', args, { cwd: directory, timeout: 30_000 })
  for (const ca of ['ca', 'other-ca']) {
    await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=Test ${ca}`, '-keyout', file(`${ca}.key`), '-out', file(`${ca}.pem`))
  }
  await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', file('server.key'), '-out', file('server.csr'))
  writeFileSync(file('server.ext'), `subjectAltName=${names.join(',')}\n`)
  await openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', file('server.ext'), '-out', file('server.pem'))
  return { directory, ca: file('ca.pem'), otherCa: file('other-ca.pem'), cert: file('server.pem'), key: file('server.key') }
}

/** redis-server arguments to speak TLS on `port` with the certificate from `files`, no client certificate asked. */
function tlsServerArgs(files: TlsFiles, port: number): string[] {
  return ['--tls-port', String(port), '--tls-cert-file', files.cert, '--tls-key-file', files.key, '--tls-ca-cert-file', files.ca, '--tls-auth-clients', 'no']
}

/** A redis-server that speaks only TLS on its port, with the certificate from `files`. */
export async function startTlsRedis(t: Teardown, files: TlsFiles): Promise<PrivateRedis> {
  const port = await freePort()
  const ca = readFileSync(files.ca, 'utf8')
  return startPrivateRedis(t, {
    port,
    args: ['--port', '0', ...tlsServerArgs(files, port)],
    probe: async (port) => {
      await until(`TLS redis-server on port ${port}`, async () => {
        const probe = new Redis(port, '127.0.0.1', { tls: { ca }, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
        probe.on('error', () => {})
        try {
          await probe.connect()
          return (await probe.ping()) === 'PONG' || undefined
        } finally {
          probe.disconnect()
        }
      }, 20_000)
    },
  })
}
