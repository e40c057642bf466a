/**
 * Starts the gateway: configuration from GATEWAY_CONFIG and the environment,
 * the shared store and the grants on Redis when the environment names one
 * (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES; otherwise short-lived
 * state in memory and grants in the state file, one replica), then listen. A
 * Redis certificate that does not verify stops start-up. A bad configuration stops start-up with a message
 * naming the field. The configuration file is watched and SIGHUP re-reads it
 * (reload.ts). SIGTERM and SIGINT close the server: new requests get 503, in-flight
 * ones finish within server.shutdownTimeoutMs.
 *
 * Faults outside any request: an unhandled promise rejection is logged and the
 * gateway keeps serving (a rejection is one failed operation; every request
 * path awaits its promises, so one reaching here is a bug to fix, not a broken
 * process). An uncaught exception is logged and the process exits with 70
 * (EX_SOFTWARE) for the orchestrator to restart it: after a synchronous throw
 * nobody caught, the process state can no longer be trusted.
 */
import { destination } from 'pino'
import { buildGateway } from './app.ts'
import { ConfigError, configPath, loadConfig } from './config/load.ts'
import type { Config } from './config/schema.ts'
import { LOGGER_OPTIONS } from './http/log.ts'
import { connectRedis, createRedisClient, firstContact } from './state/redis-connection.ts'
import { SqliteGrantStorage } from './state/sqlite-grant-storage.ts'
import { watchConfig } from './config/reload.ts'

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`${err.message}\n`)
  process.exit(78) // EX_CONFIG
}

const { connection: redisConnection, keyPrefix, commandTimeoutMs } = config.redis
const redis = redisConnection ? createRedisClient({ connection: redisConnection, keyPrefix, commandTimeoutMs }) : undefined
// Lines go out without blocking the request that wrote them; whatever is still buffered is written on exit.
const logger = { ...LOGGER_OPTIONS, level: config.server.logLevel, stream: destination({ dest: 1, sync: false }) }
let grantStorage
try {
  // On Redis, the app keeps grants there itself, each command measured as the store's are.
  grantStorage = redis ? undefined : new SqliteGrantStorage(config.state.path)
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`)
  process.exit(73) // EX_CANTCREAT
}
const app = await buildGateway({ config, logger, processMetrics: true, ...(grantStorage ? { grantStorage } : {}), ...(redis ? { redis } : {}) })
if (redis) {
  const contact = firstContact(redis, Math.max(commandTimeoutMs * 2, 1000) + 1000)
  connectRedis(redis, app.log, app.gateway.metrics.redisConnection())
  // A certificate that does not verify is a configuration to fix, not an outage to wait out.
  const refused = await contact
  if (refused) {
    process.stderr.write(`${refused}\n`)
    redis.disconnect()
    process.exit(78) // EX_CONFIG
  }
  app.log.info({ mode: redisConnection!.mode, tls: redisConnection!.tls, waitReplicas: config.redis.waitReplicas }, 'state is kept in Redis')
} else app.log.warn({ state: config.state.path }, 'Redis is not configured (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES): short-lived state is kept in memory and grants in the state file, so run only one replica')

process.on('unhandledRejection', (reason) => {
  app.log.error({ err: reason }, 'unhandled promise rejection; still serving')
})
process.on('uncaughtException', (err, origin) => {
  app.log.fatal({ err, origin }, 'uncaught exception; exiting for the orchestrator to restart the gateway')
  process.exit(70) // EX_SOFTWARE
})
// Load the upstream's metadata early; a failure is retried on the first request that needs it.
app.gateway.upstream.metadata().catch((err: Error) => app.log.warn({ err: err.message }, 'upstream metadata not loaded yet'))

const watcher = watchConfig(app.gateway, { path: configPath(), env: process.env, log: app.log })
process.on('SIGHUP', () => watcher.reload())

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.log.info({ signal }, 'shutting down: no new requests; in-flight ones finish')
    watcher.close()
    // Bounded: a request stuck past server.shutdownTimeoutMs must not keep the old replica alive.
    setTimeout(() => {
      app.log.warn({ timeoutMs: config.server.shutdownTimeoutMs }, 'requests still in flight at the shutdown deadline; exiting')
      process.exit(1)
    }, config.server.shutdownTimeoutMs).unref()
    app.close().then(
      () => {
        app.log.info({}, 'shut down')
        process.exit(0)
      },
      (err: unknown) => {
        app.log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  })
}

await app.listen({ port: config.port, host: config.host })
