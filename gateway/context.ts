/**
 * What every route is given: the Gateway built once per app (app.ts builds
 * it, routes read it), the facts settled per route, and the endpoint paths.
 * It sits below both, so neither routes nor app import each other's types.
 */
import type { ClientRegistry } from './clients/registry.ts'
import type { Config } from './config/schema.ts'
import type { GrantRegistry } from './grants/registry.ts'
import type { Metrics } from './http/metrics.ts'
import type { ConsentPolicy } from './policy/consent.ts'
import type { RedirectAllowlist } from './policy/redirect-uri.ts'
import type { Sealer } from './state/seal.ts'
import type { Store } from './state/store.ts'
import type { Upstream } from './upstream/index.ts'
import type { McpProxy } from './upstream/mcp-proxy.ts'

export const PATHS = {
  authorization: '/authorize',
  token: '/token',
  registration: '/register',
  revocation: '/revoke',
  callback: '/callback',
  consent: '/consent',
} as const

/** Everything a route needs, built once per app. */
export interface Gateway {
  config: Config
  sealer: Sealer
  clients: ClientRegistry
  /** Every connection (grant), block and client met, kept durably. */
  grants: GrantRegistry
  /** Replaced when the configuration file is reloaded (reload.ts): read it per request, never keep a reference. */
  allowlist: RedirectAllowlist
  consent: ConsentPolicy
  store: Store
  upstream: Upstream
  /** Front mode only: the way to the MCP server. */
  mcpProxy: McpProxy | undefined
  metrics: Metrics
  /** The gateway's endpoints, absolute; its metadata advertises the OAuth ones. */
  endpoints: Readonly<Record<keyof typeof PATHS, string>>
}

/** What a request's route decides for it, settled when the route is added. */
export interface RouteFacts {
  /** The route's pattern, which metrics are labelled by. */
  url: string
  /** `config: { log: 'quiet' }`: a successful answer's request line is logged at debug (RequestLog). */
  quiet: boolean
  /** `config: { browser: true }`: errors are answered with the HTML page (errors.ts). */
  browser: boolean
  /** Not `config: { cors: false }`: pages of any origin may read the answers (cors.ts). */
  cors: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    gateway: Gateway
  }
  interface FastifyRequest {
    /** The matched route's facts, from its first hook on; null on the not-found answer. */
    route: RouteFacts | null
  }
}
