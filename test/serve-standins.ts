/**
 * Serves only the stand-ins (upstream and MCP server), for docker-compose,
 * where the gateway runs from its own production image.
 * Env: GATEWAY_PUBLIC_URL (where the gateway is), DEMO_UPSTREAM_PORT (4000), DEMO_MCP_PORT (3001), DEMO_HOST (127.0.0.1).
 */
import { startStandIns } from './support/standins.ts'

const host = process.env.DEMO_HOST ?? '127.0.0.1'
const gatewayUrl = (process.env.GATEWAY_PUBLIC_URL ?? 'http://localhost:8080').replace(/\/$/, '')
const standIns = await startStandIns(gatewayUrl, host)
const { upstream, mcp } = standIns
process.stdout.write(`stand-in upstream ${upstream.issuer} (client ${upstream.clientId}), MCP server ${mcp.url}, account ${upstream.account.username} / ${upstream.account.password}\n`)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void standIns.close().then(() => process.exit(0)))
}
