/**
 * Starts the gateway: configuration from GATEWAY_CONFIG and the environment,
 * then listen. A bad configuration stops start-up with a message naming the
 * field. SIGTERM and SIGINT close the server: in-flight requests finish.
 */
import { buildGateway, LOGGER_OPTIONS } from './app.ts'
import { ConfigError, loadConfig, type Config } from './config.ts'

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (!(err instanceof ConfigError)) throw err
  process.stderr.write(`${err.message}\n`)
  process.exit(78) // EX_CONFIG
}

const app = await buildGateway({ config, logger: LOGGER_OPTIONS })
// Load the upstream's metadata early; a failure is retried on the first request that needs it.
app.gateway.upstream.metadata().catch((err: Error) => app.log.warn({ err: err.message }, 'upstream metadata not loaded yet'))

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    app.log.info({ signal }, 'shutting down')
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  })
}

await app.listen({ port: config.port, host: config.host })
