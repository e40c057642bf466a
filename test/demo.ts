/**
 * `npm run demo`: the gateway with the shipped config/gateway.yaml, in front
 * of a stand-in for my.neonpanel.com (the real oidc-provider, with a sign-in
 * page and a test account), plus a stand-in MCP server (the official MCP SDK)
 * that accepts only tokens the stand-in upstream says are active.
 *
 * At start it runs one scripted connector flow through the gateway and prints
 * each step, then keeps serving for MCP Inspector or any MCP client.
 * `--check` runs the flow and exits (0 when it worked).
 *
 * Ports: PORT (gateway, 8080), DEMO_UPSTREAM_PORT (4000), DEMO_MCP_PORT (3001).
 */
import { randomBytes } from 'node:crypto'
import { buildGateway } from '../gateway/app.ts'
import { LOGGER_OPTIONS } from '../gateway/http/log.ts'
import { loadConfig } from '../gateway/config/load.ts'
import { CookieBrowser, signInAndFollow } from './support/browser.ts'
import { ConnectorProvider, mcpClient, textOf, transportFor } from './support/mcp-client.ts'
import { startStandIns } from './support/standins.ts'

const checkOnly = process.argv.includes('--check')
const host = '127.0.0.1'
const gatewayPort = Number(process.env.PORT ?? 8080)
const gatewayUrl = `http://localhost:${gatewayPort}`

const standIns = await startStandIns(gatewayUrl, host)
const { upstream, mcp } = standIns
const config = loadConfig({
  ...process.env,
  GATEWAY_PUBLIC_URL: gatewayUrl,
  HOST: host,
  PORT: String(gatewayPort),
  UPSTREAM_ISSUER: upstream.issuer,
  UPSTREAM_CLIENT_ID: upstream.clientId,
  UPSTREAM_CLIENT_SECRET: upstream.clientSecret,
  MCP_RESOURCE: mcp.url,
  GATEWAY_SECRET: process.env.GATEWAY_SECRET ?? randomBytes(32).toString('base64url'),
})
const gateway = await buildGateway({ config, logger: checkOnly ? false : { ...LOGGER_OPTIONS, level: 'warn' } })
await gateway.listen({ port: config.port, host: config.host })

async function shutdown() {
  await gateway.close()
  await standIns.close()
}
process.once('SIGINT', () => void shutdown().then(() => process.exit(0)))
process.once('SIGTERM', () => void shutdown().then(() => process.exit(0)))

const say = (line: string) => process.stdout.write(`${line}\n`)

/** One connector flow, as Claude Code would run it (loopback redirect), step by step. */
async function scriptedFlow() {
  const provider = new ConnectorProvider('http://127.0.0.1:33418/callback', { client_name: 'Demo connector' })
  await mcpClient()
    .connect(transportFor(mcp.url, provider))
    .catch(() => undefined)
  if (!provider.lastAuthorizationUrl) throw new Error('the MCP server did not ask for authorization')
  say(`  1. MCP server answered 401; discovered ${gatewayUrl}, registered a client`)
  const result = await signInAndFollow(new CookieBrowser(), provider.lastAuthorizationUrl.href, upstream.account, (url) => url.port === '33418')
  const code = result.redirect?.searchParams.get('code')
  if (!code) throw new Error(`the browser did not come back with a code: ${result.response?.status} ${result.body?.slice(0, 200)}`)
  say(`  2. approved the gateway's consent page, signed in at the upstream as ${upstream.account.username}; came back with a code and iss=${result.redirect?.searchParams.get('iss')}`)
  const transport = transportFor(mcp.url, provider)
  await transport.finishAuth(code)
  say('  3. exchanged the code at the gateway for NeonPanel tokens')
  const client = mcpClient()
  await client.connect(transportFor(mcp.url, provider))
  say(`  4. called the whoami tool: "${textOf(await client.callTool({ name: 'whoami', arguments: {} }))}"`)
  await client.close()
}

say(`
NeonPanel OAuth gateway demo

  gateway (issuer)    ${gatewayUrl}
  metadata            ${gatewayUrl}/.well-known/oauth-authorization-server
  stand-in upstream   ${upstream.issuer}   (plays my.neonpanel.com)
  stand-in MCP server ${mcp.url}   (plays mcp.neonpanel.com)
  test account        ${upstream.account.username} / ${upstream.account.password}

Scripted connector flow:`)
try {
  await scriptedFlow()
  say('  the whole flow works.')
} catch (err) {
  say(`  FAILED: ${(err as Error).message}`)
  await shutdown()
  process.exit(1)
}

if (checkOnly) {
  await shutdown()
  process.exit(0)
}
say(`
Try it with MCP Inspector (npx @modelcontextprotocol/inspector): choose Streamable HTTP,
enter ${mcp.url} and connect; it discovers the gateway, registers, and opens the consent page, then the sign-in page.
Press Ctrl+C to stop.`)
