/**
 * Builds the gateway as a Fastify app without listening, so tests drive it
 * with `inject` or real HTTP and server.ts only adds the socket and signals.
 */
import formbody from '@fastify/formbody'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { ClientMetadataDocuments } from './clients/metadata-documents.ts'
import { ClientRegistry } from './clients/registry.ts'
import type { Config } from './config/schema.ts'
import { GrantRegistry } from './grants/registry.ts'
import { PATHS, type Gateway, type RouteFacts } from './context.ts'
import { shuttingDown } from './errors.ts'
import { allowCrossOrigin, answerPreflights } from './http/cors.ts'
import { clientErrorHandler, errorHandler, frameworkErrorHandler, notFoundHandler } from './http/error-handler.ts'
import { gatewayLogger, identify, RequestLog, requestId, type GatewayLoggerOptions } from './http/log.ts'
import { Metrics } from './http/metrics.ts'
import { parameterLimit } from './http/params.ts'
import { rateLimitChecks } from './http/rate-limits.ts'
import { ConsentPolicy } from './policy/consent.ts'
import { allowlistSources } from './policy/presets.ts'
import { RedirectAllowlist } from './policy/redirect-uri.ts'
import { UserSessions } from './policy/user-session.ts'
import { checkReadiness } from './routes/health.ts'
import { routes } from './routes/index.ts'
import type { RedisClient } from './state/redis-connection.ts'
import { RedisGrantStorage } from './state/redis-grant-storage.ts'
import { RedisStore } from './state/redis-store.ts'
import type { GrantStorage } from './state/grant-storage.ts'
import { Sealer } from './state/seal.ts'
import { SqliteGrantStorage } from './state/sqlite-grant-storage.ts'
import { MemoryStore, type Store } from './state/store.ts'
import { createClientMetadataFetcher, type ClientMetadataFetcher } from './upstream/document-fetcher.ts'
import { createUpstream } from './upstream/index.ts'
import { createMcpProxy } from './upstream/mcp-proxy.ts'

/** A route's hooks of one kind as a list, whether it declared none, one or several. */
function hooksOf<T>(hooks: T | T[] | undefined): T[] {
  return hooks === undefined ? [] : [hooks].flat() as T[]
}

export interface GatewayOptions {
  config: Config
  /** Short-lived shared state; a RedisStore on `redis` when that is given, else MemoryStore (one replica). The app closes it. */
  store?: Store
  /**
   * Where grants, blocks, revocations and the client list are kept: server.ts passes the state
   * file (SQLite) when there is no Redis; absent, Redis when `redis` is given (each command
   * measured, as the store's are), else a SQLite database in memory (tests). The app closes it.
   */
  grantStorage?: GrantStorage
  /**
   * The replica's Redis connection (state/redis-connection.ts): the store, unless `store` is given, and what needs
   * Redis beyond the Store (rate limits). The app closes it (through the store it builds).
   */
  redis?: RedisClient
  /** Production: LOGGER_OPTIONS with a stream. */
  logger?: GatewayLoggerOptions | false
  /** Node's process metrics (memory, event loop, GC) in /metrics; the process-wide collectors suit one app per process. */
  processMetrics?: boolean
}

/** How often expired grants are ended. */
const PURGE_MS = 60_000

/** Trusts the nearest `hops` proxies: X-Forwarded-For is read from its right end, that many entries deep. */
function trustHops(hops: number) {
  return (_address: string, hop: number) => hop < hops
}

export async function buildGateway(options: GatewayOptions): Promise<FastifyInstance> {
  const { config } = options
  const { server } = config
  const app = Fastify({
    ...(options.logger ? { loggerInstance: gatewayLogger(options.logger) } : { logger: false }),
    logController: new RequestLog(),
    genReqId: requestId,
    requestIdHeader: false,
    // Only for the client address rate limits count by: the public URL comes from config, never from Host or X-Forwarded-* headers.
    trustProxy: typeof server.trustProxy === 'number' ? trustHops(server.trustProxy) : server.trustProxy,
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
    // While closing, a request on a kept-alive connection gets the OAuth-shaped 503 below instead of Fastify's.
    return503OnClosing: false,
  })

  const sealer = new Sealer(config.secrets)
  const endpoints = Object.freeze(
    Object.fromEntries(Object.entries(PATHS).map(([name, path]) => [name, config.publicUrl + path])),
  ) as Gateway['endpoints']
  const metrics = new Metrics({ processMetrics: options.processMetrics ?? false })
  // Grants, blocks and revocations wait for redis.waitReplicas replicas, as the code's spent mark does (docs/redis.md).
  const durability = { waitReplicas: config.redis.waitReplicas, waitTimeoutMs: config.redis.waitTimeoutMs, observe: metrics.redisCommand }
  const store = options.store ?? (options.redis ? new RedisStore(options.redis, durability) : new MemoryStore(config.memoryStore.maxEntries))
  if (store instanceof MemoryStore) metrics.watchMemoryStore(store)
  const upstream = createUpstream(config, endpoints.callback, { log: app.log, observe: (call, seconds, failure) => metrics.upstreamCall(call, seconds, failure) })
  const mcpProxy = config.front.enabled ? createMcpProxy(config.front) : undefined
  const documents = config.clientMetadataDocuments
  const fetcher: ClientMetadataFetcher | undefined = documents.enabled
    ? createClientMetadataFetcher({ timeoutMs: documents.timeoutMs, allowLoopback: documents.developmentAllowLoopback })
    : undefined
  const clients = new ClientRegistry(sealer, fetcher && new ClientMetadataDocuments(fetcher, store, documents, (document, outcome) => metrics.documentFetched(document, outcome)))
  metrics.watchReadiness(store instanceof MemoryStore ? 'memory' : options.redis ? 'redis' : 'other', () => checkReadiness({ upstream, store }))
  const grantStorage = options.grantStorage ?? (options.redis ? new RedisGrantStorage(options.redis, durability) : new SqliteGrantStorage(':memory:'))
  const grants = new GrantRegistry({
    storage: grantStorage,
    sealer,
    settings: config.grants,
    observer: metrics,
    log: app.log,
    async revokeUpstream(refreshToken, clientId) {
      // In registration passthrough the grant's refresh token belongs to the client's own upstream client.
      const found = await clients.find(clientId)
      return upstream.revokeRefreshToken(refreshToken, found.ok ? found.client.upstream : undefined)
    },
  })
  metrics.watchGrants(grants)
  // Ends expired grants (and revokes their upstream tokens) now and then; every replica may, each grant ends once.
  const purger = setInterval(() => void grants.purgeExpired().catch((err: Error) => app.log.warn({ err: err.message }, 'expired grants not purged; next try in a minute')), PURGE_MS).unref()
  app.decorate('gateway', {
    config,
    sealer,
    clients,
    grants,
    allowlist: new RedirectAllowlist(allowlistSources(config.redirectPresets, config.allowedRedirectUris)),
    consent: new ConsentPolicy(sealer, config),
    userSessions: new UserSessions(sealer, config),
    store,
    upstream,
    mcpProxy,
    metrics,
    endpoints,
  })
  app.decorateRequest('redirectBack', null)
  app.decorateRequest('oauthClient', null)
  app.decorateRequest('flow', null)
  app.decorateRequest('route', null)
  const limitParameters = parameterLimit(server.maxParameters)
  const limitChecks = await rateLimitChecks(app, config, options.redis, clients, (endpoint, rule) => metrics.rateLimited(endpoint, rule))
  let closing = false
  // What depends on the route is settled once, when the route is added: a request never reads its route's options (Fastify builds
  // them anew on each read). Hooks on every request are plain callbacks: a promise per hook per request is measurable on the
  // metadata path. The not-found answer has no route and gets its id and CORS headers from the error handler.
  app.addHook('onRoute', (route) => {
    const facts: RouteFacts = Object.freeze({
      url: route.url,
      quiet: route.config?.log === 'quiet',
      browser: route.config?.browser === true,
      cors: route.config?.cors !== false,
    })
    const arrived = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
      request.route = facts
      if (facts.cors) allowCrossOrigin(reply)
      // A quiet route's success writes no line at info for an id to name, and carries no header to expose: only its failures are named (onSend).
      if (!facts.quiet) identify(request, reply, facts.cors)
      done(closing ? shuttingDown() : undefined)
    }
    route.onRequest = [arrived, ...hooksOf(route.onRequest)]
    if (route.config?.parameters !== false) route.preValidation = [limitParameters, ...hooksOf(route.preValidation)]
    // Only the routes that opt in get their endpoint's rate limits; the others (metadata, health) never run them.
    const checkLimits = route.config?.limits === undefined ? undefined : limitChecks[route.config.limits]
    if (checkLimits) route.preHandler = [checkLimits, ...hooksOf(route.preHandler)]
  })
  // An answer finished while closing ends its connection too, or a kept-alive client would hold the server open; a quiet
  // route's failure names its request, as every answer of the other routes does from the start.
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close')
    const route = request.route
    if (route?.quiet && reply.statusCode >= 400) identify(request, reply, route.cors)
    done(null, payload)
  })
  // Labelled by route pattern: a 404 for any path counts once, as `unmatched`.
  app.addHook('onResponse', (request, reply, done) => {
    metrics.request(request.route?.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000)
    done()
  })

  await app.register(formbody)
  await answerPreflights(app)

  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)
  await app.register(routes)

  // Before the server waits for in-flight requests: new ones are refused, and open event streams would never end by themselves.
  app.addHook('preClose', async () => {
    closing = true
    await mcpProxy?.close()
  })
  app.addHook('onReady', async () => {
    await grants.start()
  })
  app.addHook('onClose', async () => {
    clearInterval(purger)
    grants.close()
    await grantStorage.close()
    await upstream.close()
    await fetcher?.close()
    await store.close()
  })
  return app
}
