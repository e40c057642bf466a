/**
 * Starts the gateway: configuration from GATEWAY_CONFIG and the environment,
 * then listen. A bad configuration stops start-up with a message naming the
 * field. SIGTERM and SIGINT close the server: in-flight requests finish.
 *
 * Faults outside any request: an unhandled promise rejection is logged and the
 * gateway keeps serving (a rejection is one failed operation; every request
 * path awaits its promises, so one reaching here is a bug to fix, not a broken
 * process). An uncaught exception is logged and the process exits with 70
 * (EX_SOFTWARE) for the orchestrator to restart it: after a synchronous throw
 * nobody caught, the process state can no longer be trusted.
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

process.on('unhandledRejection', (reason) => {
  app.log.error({ err: reason }, 'unhandled promise rejection; still serving')
})
process.on('uncaughtException', (err, origin) => {
  app.log.fatal({ err, origin }, 'uncaught exception; exiting for the orchestrator to restart the gateway')
  process.exit(70) // EX_SOFTWARE
})
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
