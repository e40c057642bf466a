/**
 * Starts the real parts together on loopback: the oidc-provider upstream,
 * the gateway (real HTTP), and the SDK's MCP server, wired as in production.
 */
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import { buildGateway, type GatewayOptions } from '../../gateway/app.ts'
import { parseConfig } from '../../gateway/config/load.ts'
import type { Config } from '../../gateway/config/schema.ts'
import type { Store } from '../../gateway/state/store.ts'
import { startMcpServer, type McpServerOptions, type StandInMcpServer } from './mcp-server.ts'
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts'
import { freePort } from './ports.ts'
import { startUpstream, type StandInUpstream, type UpstreamOptions } from './upstream.ts'

export const TEST_SECRET = 'test-gateway-secret-0123456789abcdef'
export const CHATGPT_REDIRECT = 'https://chatgpt.com/connector/oauth/c0nn3ct0r'

export interface Stack {
  gateway: FastifyInstance
  gatewayUrl: string
  config: Config
  upstream: StandInUpstream
  mcp: StandInMcpServer
  /** The MCP URL clients use: the MCP server's own, or the gateway's /mcp in front mode. */
  mcpUrl: string
  /** The fault-injecting proxy in front of the upstream, when asked for. */
  proxy?: FaultProxy
  close(): Promise<void>
}

export interface StackOptions {
  /** Changes to the gateway's config file object. */
  config?: (file: Record<string, any>) => Record<string, any>
  env?: Record<string, string>
  upstream?: Partial<UpstreamOptions>
  mcp?: Partial<Omit<McpServerOptions, 'upstream' | 'resourceMetadataUrl'>>
  /** Front mode: the gateway proxies <gateway>/mcp to the MCP server, which is then MCP_RESOURCE. */
  front?: boolean
  /** The gateway's logger (e.g. a stream the test reads). */
  logger?: GatewayOptions['logger']
  /** A store to share between stacks, as replicas share Redis. */
  store?: Store
  /** Where grants are kept (SQLite in memory when absent). */
  grantStorage?: GatewayOptions['grantStorage']
  /** The Redis connection for rate limits (replicas share their counters through it). */
  redis?: GatewayOptions['redis']
  /** Puts a fault-injecting proxy in front of the upstream: the upstream's issuer is the proxy's origin. */
  faultProxy?: boolean
}

/** The gateway config file a test starts from. */
export function gatewayFile(gatewayUrl: string, upstreamIssuer: string, mcpResource: string): Record<string, any> {
  return {
    publicUrl: gatewayUrl,
    host: '127.0.0.1',
    mcpResource,
    upstream: { issuer: upstreamIssuer, clientId: 'neonpanel-mcp-gateway', timeoutMs: 2000, connectTimeoutMs: 1000 },
    allowedRedirectUris: ['https://chatgpt.com/connector/oauth/*', 'https://claude.ai/api/mcp/auth_callback', 'http://127.0.0.1/callback'],
    scopes: { supported: ['openid', 'profile', 'email', 'offline_access'], default: ['openid', 'offline_access'] },
  }
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const gatewayPort = await freePort()
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`
  const proxy = options.faultProxy ? await startFaultProxy() : undefined
  const upstream = await startUpstream({ redirectUris: [`${gatewayUrl}/callback`], publicOrigin: proxy?.url, ...options.upstream })
  proxy?.setTarget(upstream.address)
  const introspectionEndpoint = `${upstream.issuer.replace(/\/$/, '')}/token/introspection`
  const mcp = await startMcpServer({
    upstream: { introspectionEndpoint, ...upstream.introspection },
    resourceMetadataUrl: `${gatewayUrl}/.well-known/oauth-protected-resource/mcp`,
    ...options.mcp,
  })
  const mcpUrl = options.front ? `${gatewayUrl}/mcp` : mcp.url
  const base = gatewayFile(gatewayUrl, upstream.issuer, mcpUrl)
  if (options.front) base.front = { enabled: true, mcpUpstream: mcp.url }
  const config = parseConfig(options.config ? options.config(base) : base, {
    GATEWAY_SECRET: TEST_SECRET,
    UPSTREAM_CLIENT_SECRET: upstream.clientSecret,
    ...options.env,
  })
  const gateway = await buildGateway({ config, logger: options.logger, store: options.store, redis: options.redis, grantStorage: options.grantStorage })
  await gateway.listen({ port: gatewayPort, host: '127.0.0.1' })

  return {
    gateway,
    gatewayUrl,
    config,
    upstream,
    mcp,
    mcpUrl,
    proxy,
    async close() {
      await gateway.close()
      await mcp.close()
      await proxy?.close()
      await upstream.close()
    },
  }
}

/** Asserts an OAuth JSON error response, RFC 6749 §5.2. */
export async function failsWith(
  t: { equal: (a: unknown, b: unknown, m: string) => unknown; match: (a: unknown, b: unknown, m: string) => unknown },
  response: Response,
  status: number,
  error: string,
) {
  const body = (await response.json()) as { error?: string; error_description?: string }
  t.equal(response.status, status, `status ${status}`)
  t.equal(body.error, error, `error ${error}`)
  t.match(response.headers.get('content-type'), /^application\/json/, 'JSON')
  t.equal(response.headers.get('cache-control'), 'no-store', 'no-store')
  return body
}

/**
 * Resolves once the code retry window (`lifetimes.codeRetrySeconds`) of a
 * code is over, given the Date.now() at which its first answer arrived: the
 * gateway stored that answer before sending it, so the window began earlier.
 */
export function pastRetryWindow(answeredAt: number, seconds: number): Promise<void> {
  // A little past the end, for the store's millisecond rounding.
  return new Promise((resolve) => setTimeout(resolve, answeredAt + seconds * 1000 + 100 - Date.now()))
}
