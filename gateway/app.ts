/**
 * Builds the gateway as a Fastify app without listening, so tests drive it
 * with `inject` or real HTTP and server.ts only adds the socket and signals.
 */
import cors from '@fastify/cors'
import formbody from '@fastify/formbody'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { ClientRegistry } from './clients.ts'
import type { Config } from './config.ts'
import { clientErrorHandler, errorHandler, frameworkErrorHandler, notFoundHandler } from './errors.ts'
import { parameterLimit } from './params.ts'
import { RedirectAllowlist } from './redirect-uri.ts'
import { routes } from './routes/index.ts'
import { Sealer } from './seal.ts'
import { MemoryStore, type Store } from './store.ts'
import { createUpstream, type Upstream } from './upstream/index.ts'

/** Everything a route needs, built once per app. */
export interface Gateway {
  config: Config
  sealer: Sealer
  clients: ClientRegistry
  allowlist: RedirectAllowlist
  store: Store
  upstream: Upstream
  /** The gateway's endpoints, absolute, as advertised in its metadata. */
  endpoints: Readonly<Record<'authorization' | 'token' | 'registration' | 'revocation' | 'callback', string>>
}

declare module 'fastify' {
  interface FastifyInstance {
    gateway: Gateway
  }
}

export interface GatewayOptions {
  config: Config
  store?: Store
  logger?: FastifyServerOptions['logger']
}

export const PATHS = {
  authorization: '/authorize',
  token: '/token',
  registration: '/register',
  revocation: '/revoke',
  callback: '/callback',
} as const

/**
 * Logger settings for production: requests are logged by path only, since a
 * query string can carry codes and state, and no header is logged at all.
 */
export const LOGGER_OPTIONS = {
  level: 'info',
  serializers: {
    req: (request: { method: string; url: string; id: string }) => ({ method: request.method, path: request.url.split('?')[0], id: request.id }),
  },
} as const

export async function buildGateway(options: GatewayOptions): Promise<FastifyInstance> {
  const { config } = options
  const { server } = config
  const app = Fastify({
    logger: options.logger ?? false,
    // Behind a load balancer the public URL comes from config, never from Host or X-Forwarded-* headers.
    trustProxy: false,
    // Endpoints that read a body set their own limit (config server.bodyLimits); nothing else needs one.
    bodyLimit: 16 * 1024,
    connectionTimeout: server.connectionTimeoutMs,
    keepAliveTimeout: server.keepAliveTimeoutMs,
    requestTimeout: server.requestTimeoutMs,
    http: {
      headersTimeout: server.headersTimeoutMs,
      requestTimeout: server.requestTimeoutMs,
      // Node checks both timeouts only this often (30 s by default), which would stretch them.
      connectionsCheckingInterval: Math.min(1000, Math.max(100, server.headersTimeoutMs / 4)),
    },
    clientErrorHandler,
    frameworkErrors: frameworkErrorHandler,
  })

  const sealer = new Sealer(config.secrets)
  const endpoints = Object.freeze(
    Object.fromEntries(Object.entries(PATHS).map(([name, path]) => [name, config.publicUrl + path])),
  ) as Gateway['endpoints']
  const store = options.store ?? new MemoryStore()
  const upstream = createUpstream(config, endpoints.callback, app.log)
  app.decorate('gateway', { config, sealer, clients: new ClientRegistry(sealer), allowlist: new RedirectAllowlist(config.allowedRedirectUris), store, upstream, endpoints })
  app.decorateRequest('redirectBack', null)

  await app.register(formbody)
  // Browser-based clients (MCP Inspector in direct mode, web portals) call metadata,
  // registration, token and revocation from a page; no credentials ride on CORS.
  await app.register(cors, {
    origin: '*',
    methods: ['GET', 'POST', 'OPTIONS'],
    allowedHeaders: ['Authorization', 'Content-Type', 'MCP-Protocol-Version'],
    exposedHeaders: ['WWW-Authenticate'],
    credentials: false,
    maxAge: 600,
    // A bare OPTIONS (no Origin) gets the same empty 204, not a text/plain 400 outside the OAuth shape.
    strictPreflight: false,
  })

  app.addHook('preValidation', parameterLimit(server.maxParameters))
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
  await app.register(routes)

  app.addHook('onClose', async () => {
    await upstream.close()
    await store.close()
  })
  return app
}
