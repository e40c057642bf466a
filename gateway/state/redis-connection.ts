/**
 * The replica's one connection to Redis, in whichever of the three ways the
 * environment names (config/load.ts parses it once): one node (REDIS_URL),
 * the master that Redis Sentinel names, followed through failovers
 * (REDIS_SENTINELS), or a Redis Cluster (REDIS_CLUSTER_NODES); over TLS with
 * the certificate verified when REDIS_TLS is on. ioredis does all of it.
 *
 * A request never waits for an unreachable Redis: with the offline queue off
 * a command fails at once while the connection is down, a command Redis does
 * not answer fails after `commandTimeoutMs`, and the store turns either into
 * StoreUnavailable (503 `temporarily_unavailable`). The client reconnects
 * with backoff in the background, so the gateway recovers by itself, also
 * after a failover.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { ConnectionOptions } from 'node:tls'
import type { RedisConnection } from '../config/schema.ts'

/** A connection in any of the three modes; both kinds take the same commands. */
export type RedisClient = Redis | Cluster

export interface RedisClientOptions {
  /** How to reach Redis; it may carry passwords, so it is never logged. */
  connection: RedisConnection
  /** Put before every key by the client itself (on a cluster too), so the store and anything sharing the client stay in one namespace. */
  keyPrefix: string
  /** How long a command may wait for Redis before the request gets a 503. */
  commandTimeoutMs: number
}

/** Where connection changes are told; a Fastify (pino) logger fits. */
export interface ConnectionLog {
  info(details: object, message: string): void
  warn(details: object, message: string): void
}

/** What the connection tells metrics (http/metrics.ts). */
export interface ConnectionObserver {
  /** The connection is back after it was lost. */
  reconnected(): void
  /** Another node is master now: Sentinel promoted a replica, or a cluster slot moved to a new master. */
  failedOver(): void
}

/** Reconnect backoff: 50 ms, 100 ms, … capped at 2 s, so a restarted or promoted Redis is found again within seconds. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt - 1, 6), 2000)
}

/** One node's TLS settings: verified against REDIS_CA_FILE, or the system's CAs without it. */
function tlsOptions(connection: RedisConnection): ConnectionOptions | undefined {
  if (!connection.tls) return undefined
  return connection.ca === undefined ? {} : { ca: connection.ca }
}

/** A cluster seed's name, kept as it is (ioredis's `dnsLookup`), for TLS to verify it. */
function keepHostName(host: string, callback: (err: NodeJS.ErrnoException | null, address: string) => void): void {
  callback(null, host)
}

/**
 * The one Redis connection of a replica, shared by the store and anything
 * else that needs Redis (rate limits). Not connected yet: `connectRedis`
 * starts it once there is a logger to tell about it.
 */
export function createRedisClient(options: RedisClientOptions): RedisClient {
  const { connection, commandTimeoutMs } = options
  const tls = tlsOptions(connection)
  const node = {
    username: connection.username,
    password: connection.password,
    ...(tls ? { tls } : {}),
    commandTimeout: commandTimeoutMs,
    // A connection that stops answering (a network partition, a paused server) is dropped and
    // reconnected, instead of timing out every later command one by one.
    socketTimeout: commandTimeoutMs * 2,
    connectTimeout: Math.max(commandTimeoutMs * 2, 1000),
    // A command in flight when the connection drops fails at once rather than being resent later:
    // the client gets a 503 and retries, instead of a resent SET NX reporting its own first write as a replay.
    maxRetriesPerRequest: 0,
    connectionName: 'oauth-gateway',
  } satisfies RedisOptions
  const standalone = { ...node, keyPrefix: options.keyPrefix, lazyConnect: true, enableOfflineQueue: false, retryStrategy: reconnectDelay } satisfies RedisOptions

  switch (connection.mode) {
    case 'single':
      return new Redis(connection.url, standalone)
    case 'sentinel':
      return new Redis({
        ...standalone,
        sentinels: connection.sentinels.map(({ host, port }) => ({ host, port })),
        name: connection.masterName,
        sentinelPassword: connection.sentinelPassword,
        // The sentinels speak TLS when the data nodes do (REDIS_TLS is one switch for all).
        ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
        sentinelCommandTimeout: commandTimeoutMs,
        // Told by the sentinels (+switch-master) rather than finding out from a failed command.
        failoverDetector: true,
        // The master's address is asked of the sentinels at each connect, so the client follows a promotion.
        sentinelRetryStrategy: reconnectDelay,
      })
    case 'cluster':
      return new Cluster(
        connection.nodes.map(({ host, port }) => ({ host, port })),
        {
          keyPrefix: options.keyPrefix,
          lazyConnect: true,
          enableOfflineQueue: false,
          redisOptions: node,
          clusterRetryStrategy: reconnectDelay,
          // A command during a master's failover is retried this many times, 100 ms apart, then fails (503):
          // a bounded wait, instead of the default 16 redirections.
          maxRedirections: 6,
          retryDelayOnFailover: 100,
          retryDelayOnClusterDown: 100,
          retryDelayOnTryAgain: 100,
          slotsRefreshTimeout: Math.max(commandTimeoutMs, 1000),
          // ioredis resolves seed names and connects by address, so TLS would check a certificate that names
          // the host (ElastiCache, MemoryDB) against an IP and refuse it: connect to seeds by the name given.
          ...(tls ? { dnsLookup: keepHostName } : {}),
        },
      )
  }
}

/** Which node answers as master: `host:port` (Sentinel and one node), or the masters of a cluster, sorted. */
function mastersOf(client: RedisClient): string | undefined {
  if (client instanceof Cluster) {
    const masters = client.nodes('master').map((node) => `${node.options.host}:${node.options.port}`)
    return masters.length ? masters.sort().join(',') : undefined
  }
  const stream = client.stream
  return stream?.remoteAddress === undefined ? undefined : `${stream.remoteAddress}:${stream.remotePort}`
}

/**
 * Connects in the background and keeps reconnecting for as long as the
 * process runs; until the connection is ready, commands fail fast and
 * /readyz says not ready. Logs one line when Redis goes away and one when it
 * is back, not one per reconnect attempt, and one when another node became
 * master (a failover seen).
 */
export function connectRedis(client: RedisClient, log: ConnectionLog, observer?: ConnectionObserver): void {
  let down = false
  let connectedBefore = false
  let master: string | undefined
  const lost = (reason: string) => {
    if (down) return
    down = true
    log.warn({ reason }, 'Redis is unreachable; requests that need it are answered 503 until it is back')
  }
  const masterSeen = () => {
    const now = mastersOf(client)
    if (now === undefined) return
    if (master !== undefined && now !== master) {
      log.warn({ before: master, now }, 'Redis failed over: another node is master now')
      observer?.failedOver()
    }
    master = now
  }
  client.on('ready', () => {
    if (connectedBefore) observer?.reconnected()
    connectedBefore = true
    down = false
    masterSeen()
    log.info({ master }, 'Redis connected')
  })
  // A cluster learns its topology again after MOVED, a lost node or a failover.
  if (client instanceof Cluster) client.on('refresh', masterSeen)
  // ioredis emits 'error' on every failed attempt; without a listener Node would end the process.
  client.on('error', (err: Error) => lost(err.message))
  // Only an unintended loss reconnects; quit() at shutdown does not.
  client.on('reconnecting', () => lost('the connection was lost'))
  // A failed first attempt is retried by retryStrategy like any later one.
  client.connect().catch(() => {})
}

/** TLS verification failures: a configuration error (wrong CA or host name), not an outage to wait out. */
const CERTIFICATE_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

function certificateError(err: unknown): (Error & { code: string }) | undefined {
  for (let cause = err as any; cause; cause = cause.lastNodeError ?? cause.cause) {
    if (typeof cause.code === 'string' && CERTIFICATE_ERRORS.has(cause.code)) return cause
  }
  return undefined
}

/**
 * Waits for the first connection attempt, at most `withinMs`: a certificate
 * Redis presents that does not verify (a wrong REDIS_CA_FILE, a name that does
 * not match) is told as a message for start-up to refuse with; anything
 * else (Redis down, slow) is left to the background reconnects.
 */
export function firstContact(client: RedisClient, withinMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const done = (message: string | undefined) => {
      clearTimeout(timer)
      client.off('ready', ready)
      client.off('error', failed)
      client.off('node error', failed)
      resolve(message)
    }
    const ready = () => done(undefined)
    const failed = (err: unknown) => {
      const bad = certificateError(err)
      done(bad && `Redis TLS: the server's certificate is not trusted (${bad.code}: ${bad.message}); check REDIS_CA_FILE and that the certificate names the host the gateway connects to`)
    }
    const timer = setTimeout(() => done(undefined), withinMs)
    client.on('ready', ready)
    client.on('error', failed)
    client.on('node error', failed)
  })
}
