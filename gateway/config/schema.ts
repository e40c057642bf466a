/**
 * The configuration's schema: every ops-facing key, its rule, default and
 * description. load.ts reads the file and the environment into it once at
 * start-up; the commented example in config/gateway.yaml agrees with it.
 */
import { z } from 'zod'
import { isLoopbackHost, parsePattern } from '../policy/redirect-uri.ts'

/** `http` only where the host is loopback (local development, tests); https everywhere else. */
const secureUrl = z
  .string()
  .refine((value) => URL.canParse(value), { message: 'must be an absolute URL', abort: true })
  .refine((value) => {
    const url = new URL(value)
    return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))
  }, 'must be https (plain http is accepted only for loopback hosts)')
  .refine((value) => !new URL(value).hash, 'must not have a fragment')

/** The gateway's own issuer: no query, and no trailing slash (RFC 8414 §2). */
const issuerUrl = secureUrl
  .refine((value) => !new URL(value).search, 'must not have a query')
  .transform((value) => value.replace(/\/+$/, ''))

/**
 * The upstream's issuer, kept as written: discovery tolerates a trailing
 * slash either way, but without discovery it is compared with the `iss` the
 * upstream sends, exactly.
 */
const upstreamIssuerUrl = secureUrl.refine((value) => !new URL(value).search, 'must not have a query')

/** An RFC 8707 §2 resource indicator: an absolute URI without a fragment. */
const resourceIndicator = z
  .string()
  .refine((value) => URL.canParse(value), { message: 'must be an absolute URI', abort: true })
  .refine((value) => !value.includes('#'), 'must not have a fragment (RFC 8707 §2)')

/**
 * What the upstream gets for the client's RFC 8707 `resource`. The gateway
 * protects one resource, so in every mode but `drop` the parameter is sent
 * on authorize, code exchange and refresh, whether or not the client named it.
 */
const upstreamResource = z.preprocess(
  (value) => (typeof value === 'string' ? { mode: value } : value),
  z.discriminatedUnion('mode', [
    /** Not sent: many upstreams answer invalid_target to any resource. The default. */
    z.strictObject({ mode: z.literal('drop') }),
    /** Sent as `resource`, naming the MCP server (mcpResource). */
    z.strictObject({ mode: z.literal('forward') }),
    /** Sent as `resource` with another value, e.g. the API the upstream knows. */
    z.strictObject({ mode: z.literal('map'), value: resourceIndicator }),
    /** Sent as `audience` (Auth0 style) with `value`, or mcpResource when no value is given. */
    z.strictObject({ mode: z.literal('audience'), value: z.string().min(1).optional() }),
  ]),
)

const redirectPattern = z.string().superRefine((value, ctx) => {
  try {
    parsePattern(value)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
  }
})

function isLoopbackPattern(value: string) {
  try {
    const pattern = parsePattern(value)
    return pattern.protocol === 'http:' && isLoopbackHost(pattern.hostname)
  } catch {
    return false
  }
}

/**
 * The MCP server behind the gateway in front mode: a private address, so
 * plain http is accepted anywhere (the hop stays inside the cluster).
 */
const internalUrl = z
  .string()
  .refine((value) => URL.canParse(value), { message: 'must be an absolute URL', abort: true })
  .refine((value) => ['http:', 'https:'].includes(new URL(value).protocol), 'must be http or https')
  .refine((value) => !new URL(value).username && !new URL(value).password, 'must not contain userinfo')
  .refine((value) => !new URL(value).hash && !new URL(value).search, 'must not have a query or fragment')

/** Paths the gateway answers itself; in front mode the MCP endpoint must not hide one of them. */
const GATEWAY_PATHS = ['/authorize', '/token', '/register', '/revoke', '/callback', '/consent', '/healthz', '/readyz', '/metrics']

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be a scope token (RFC 6749 §3.3)')

const upstreamSchema = z.strictObject({
  /**
   * Issuer of NeonPanel's OAuth server; env UPSTREAM_ISSUER. Discovered with RFC 8414, then OpenID
   * discovery, each with the issuer as written and then with a trailing slash added or removed.
   */
  issuer: upstreamIssuerUrl,
  /** The one client NeonPanel registered for the gateway; env UPSTREAM_CLIENT_ID. Its secret comes only from UPSTREAM_CLIENT_SECRET. */
  clientId: z.string().min(1),
  /** How the gateway authenticates to the upstream token endpoint; `auto` picks from the upstream's metadata. */
  tokenEndpointAuthMethod: z.enum(['auto', 'client_secret_basic', 'client_secret_post']).default('auto'),
  /**
   * Explicit endpoints for an upstream without discovery; when set, discovery is skipped and
   * `issuer` must be written exactly as the upstream's `iss` reads.
   */
  endpoints: z
    .strictObject({
      authorization_endpoint: secureUrl,
      token_endpoint: secureUrl,
      revocation_endpoint: secureUrl.optional(),
      /** RFC 7591 endpoint, used when registration.mode is `upstream`. */
      registration_endpoint: secureUrl.optional(),
    })
    .optional(),
  /**
   * Deadline of every upstream request, in milliseconds, from connect to the
   * last byte of the body: a body that trickles in slowly is cut off at it.
   */
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** Largest upstream answer, in bytes (default 1 MiB); a larger one is dropped while it streams and answered 502. */
  maxResponseBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  /** Connect timeout, in milliseconds. */
  connectTimeoutMs: z.number().int().min(100).max(60_000).default(5_000),
  /** Most open connections to the upstream. */
  maxConnections: z.number().int().min(1).max(1024).default(64),
  /** RFC 8707 `resource` towards the upstream: drop (default), forward, map or audience. */
  resource: upstreamResource.default({ mode: 'drop' }),
})

const redisSchema = z.strictObject({
  /**
   * Put before every key the gateway writes to Redis, so several gateways (or
   * other applications) can share one Redis; on a cluster it applies too. How
   * to reach Redis, which may carry passwords, comes only from the environment
   * (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES; docs/redis.md).
   */
  keyPrefix: z.string().min(1).max(64).regex(/^[\x21-\x7E]+$/, 'must be printable ASCII without spaces').default('oauth-gateway:'),
  /** How long a request waits for Redis before it is answered 503 temporarily_unavailable, in milliseconds. */
  commandTimeoutMs: z.number().int().min(50).max(30_000).default(1000),
  /**
   * Replicas that must acknowledge a durable write (a code's spent mark, grants, revocations,
   * blocks) before the gateway reports it done: the write goes to the master, then `WAIT
   * waitReplicas waitTimeoutMs`; fewer acknowledgements answer 503 instead of a success a
   * failover could forget. Default: 1 with REDIS_SENTINELS or REDIS_CLUSTER_NODES, 0 with
   * REDIS_URL (one node, no replica to wait for). Example: 1.
   */
  waitReplicas: z.number().int().min(0).max(16).optional(),
  /**
   * How long a durable write waits for its replicas, in milliseconds; shorter than commandTimeoutMs.
   * Default: half of commandTimeoutMs (500 with its default). Example: 500.
   */
  waitTimeoutMs: z.number().int().min(1).max(30_000).optional(),
}).refine((redis) => redis.waitTimeoutMs === undefined || redis.waitTimeoutMs < redis.commandTimeoutMs, { message: 'must be shorter than redis.commandTimeoutMs (the WAIT itself must not time out)', path: ['waitTimeoutMs'] })

/** A Redis node or sentinel, from REDIS_SENTINELS or REDIS_CLUSTER_NODES. */
export interface RedisNode {
  host: string
  port: number
}

/**
 * How the gateway reaches Redis, from the environment only (it carries passwords):
 * exactly one of REDIS_URL, REDIS_SENTINELS (+ REDIS_SENTINEL_MASTER), REDIS_CLUSTER_NODES.
 */
export type RedisConnection = (
  /** REDIS_URL: one node, redis:// or rediss://. */
  | { mode: 'single'; url: string }
  /** REDIS_SENTINELS + REDIS_SENTINEL_MASTER: the master the sentinels name, followed through failovers. */
  | { mode: 'sentinel'; sentinels: readonly RedisNode[]; masterName: string; sentinelPassword?: string | undefined }
  /** REDIS_CLUSTER_NODES: seed nodes of a Redis Cluster; the rest is discovered. */
  | { mode: 'cluster'; nodes: readonly RedisNode[] }
) & {
  /** REDIS_USERNAME / REDIS_PASSWORD: the data nodes' ACL user and password. */
  username?: string | undefined
  password?: string | undefined
  /** REDIS_TLS=1 (or a rediss:// URL): TLS to every node and sentinel, the certificate verified. */
  tls: boolean
  /** REDIS_CA_FILE's content (PEM): the CA that signed the nodes' certificates, instead of the system's. */
  ca?: string | undefined
}

/** Which client presets' redirect URIs are allowed (see gateway/policy/presets.ts); all off unless switched on. */
const redirectPresets = z
  .strictObject({
    /** https://chatgpt.com/connector/oauth/<id>, the legacy connector redirect, GPT Actions. */
    chatgpt: z.boolean().default(false),
    /** https://claude.ai and https://claude.com /api/mcp/auth_callback. */
    claude: z.boolean().default(false),
    /** http://localhost, 127.0.0.1 and [::1], any port, any path: Claude Code, VS Code and other native clients. */
    loopback: z.boolean().default(false),
    /** https://vscode.dev/redirect and https://insiders.vscode.dev/redirect. */
    vscodeWeb: z.boolean().default(false),
    /** cursor://anysphere.cursor-mcp/oauth/callback. */
    cursor: z.boolean().default(false),
    /** http://localhost:<any port>/oauth/callback and /oauth/callback/debug (MCP Inspector). */
    inspector: z.boolean().default(false),
  })
  .prefault({})

/** Space-separated upstream scopes ('' for none). */
const upstreamScopes = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$|^$/, 'must be space-separated scope tokens, or empty')

/**
 * The consent page (MCP authorization: a proxy with one upstream client must ask
 * the user before it sends them upstream for a client they have not approved).
 */
const consentSchema = z
  .strictObject({
    /** How long an approval is remembered in the browser, in days; 0 asks every time. */
    rememberDays: z.number().int().min(0).max(400).default(30),
    /**
     * Redirect URIs (exact or patterns, as in allowedRedirectUris) whose clients skip the
     * page: the code can only ever reach that address, so only list addresses whose owner
     * ops trust with every user's account (e.g. a first-party app). Never loopback URIs.
     */
    trustedRedirectUris: z.array(redirectPattern.refine((value) => !isLoopbackPattern(value), 'must not be a loopback URI: any program on the user\'s machine can listen there')).default([]),
    /** Client ids that skip the page: in practice client metadata document URLs, compared exactly. */
    trustedClientIds: z.array(z.string().min(1)).default([]),
  })
  .prefault({})

/** Client ID Metadata Documents (MCP 2025-11-25; draft-ietf-oauth-client-id-metadata-document). */
const clientMetadataDocumentsSchema = z
  .strictObject({
    /** Accept https URLs as client ids and advertise client_id_metadata_document_supported. */
    enabled: z.boolean().default(true),
    /** Most bytes read of a document; the draft recommends 5 kB. */
    maxBytes: z.number().int().min(512).max(65_536).default(5120),
    /** Most bytes read of a JWKS named by a document's jwks_uri. */
    jwksMaxBytes: z.number().int().min(1024).max(262_144).default(32_768),
    /** Whole-fetch timeout (connect, headers and body), in milliseconds. */
    timeoutMs: z.number().int().min(100).max(30_000).default(5_000),
    /** Cache lifetime when the answer names none (no max-age, no Expires), in seconds. */
    defaultCacheSeconds: z.number().int().min(0).max(86_400).default(300),
    /** Upper bound on any cache lifetime, whatever the answer's Cache-Control says, in seconds. */
    maxCacheSeconds: z.number().int().min(0).max(86_400).default(3600),
    /** Most documents and key sets one replica puts into the shared store at a time. */
    maxCachedDocuments: z.number().int().min(0).max(100_000).default(1000),
    /**
     * DEVELOPMENT ONLY, never in production: allow documents on loopback addresses
     * (and plain http there), for local tests. Refused unless publicUrl is loopback too.
     */
    developmentAllowLoopback: z.boolean().default(false),
  })
  .prefault({})

/** Largest request body, in bytes, per endpoint that reads one; larger bodies are answered 413 `invalid_request`. */
const bodyLimitsSchema = z
  .strictObject({
    /** POST /register: JSON client metadata. */
    register: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024),
    /** POST /token: a form with a code or refresh token, the verifier and client credentials. */
    token: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024),
    /** POST /revoke: a form with a token and client credentials. */
    revoke: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024),
    /** POST /authorize: the authorization request as a form. */
    authorize: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024),
  })
  .prefault({})

/** Limits that protect the gateway from slow and oversized requests (Node's http server and Fastify settings). */
const serverSchema = z
  .strictObject({
    /** Time a client has to send its request headers, ms; then 408 and the connection is closed (slowloris). */
    headersTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
    /** Time a client has to send its whole request, headers and body, ms; then 408 and the connection is closed. */
    requestTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
    /** How long an idle keep-alive connection stays open, ms; longer than the idle timeout of the load balancer in front (often 60 s). */
    keepAliveTimeoutMs: z.number().int().min(100).max(600_000).default(72_000),
    /** A connection with no traffic at all during a request is closed after this long, ms; must outlast upstream.timeoutMs. */
    connectionTimeoutMs: z.number().int().min(100).max(600_000).default(60_000),
    /** Most parameters in one query string, form or registration; a repeated parameter counts each time. */
    maxParameters: z.number().int().min(10).max(10_000).default(100),
    bodyLimits: bodyLimitsSchema,
    /**
     * Proxies in front of the gateway whose X-Forwarded-For is believed, for the
     * client address that rate limits count by: a number of hops (1 behind one
     * load balancer) or the proxies' addresses and CIDR ranges. 0 (default): the
     * peer address, which behind a load balancer is the balancer's for everyone.
     */
    trustProxy: z.union([z.number().int().min(0).max(10), z.array(z.string().min(1)).min(1)]).default(0),
    /** On SIGTERM, how long in-flight requests may take to finish before the process exits anyway, ms. */
    shutdownTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
    /** pino level of the log; `debug` adds the request lines of discovery documents, probes and /metrics. */
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  })
  .prefault({})
  .refine((s) => s.headersTimeoutMs <= s.requestTimeoutMs, { message: 'must not be longer than server.requestTimeoutMs', path: ['headersTimeoutMs'] })

/** At most `max` requests per `windowSeconds`; `max: 0` switches this limit off. */
const rateLimit = z.strictObject({
  max: z.number().int().min(0).max(1_000_000),
  windowSeconds: z.number().int().min(1).max(86_400).default(60),
})

/**
 * Rate limits per client address and per client id, counted in Redis when
 * REDIS_URL is set (so across replicas), in memory otherwise. Excess requests
 * get 429 temporarily_unavailable with Retry-After.
 */
const limitsSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** POST /register: per address only, since a new client has no id yet. */
    register: z.strictObject({ perIp: rateLimit.default({ max: 60, windowSeconds: 60 }) }).prefault({}),
    /** /authorize: browsers, one user each. */
    authorize: z
      .strictObject({ perIp: rateLimit.default({ max: 60, windowSeconds: 60 }), perClient: rateLimit.default({ max: 600, windowSeconds: 60 }) })
      .prefault({}),
    /**
     * POST /token and /revoke: hosted clients (ChatGPT, Claude) call from a few
     * server addresses for all their users, so the address limit is generous
     * and the client limit is the one that stops a runaway client.
     */
    token: z
      .strictObject({ perIp: rateLimit.default({ max: 1200, windowSeconds: 60 }), perClient: rateLimit.default({ max: 120, windowSeconds: 60 }) })
      .prefault({}),
  })
  .prefault({})

export type RateLimitRule = z.infer<typeof rateLimit>

/**
 * The in-memory store, used when env REDIS_URL is not set. Each sign-in
 * leaves three or four entries behind, each until it expires: the consent
 * answer's mark (when the page was shown) and its state's mark, both for
 * `lifetimes.transactionSeconds`, its code's spent mark (`codeSeconds` + 60
 * s) and the code's answer for repeats (`codeRetrySeconds`). With the default
 * lifetimes, 100,000 entries hold 75 to 135 sign-ins a second, sustained.
 * When full of live entries it answers 503 rather than forget a mark.
 */
const memoryStoreSchema = z
  .strictObject({
    maxEntries: z.number().int().min(10).max(10_000_000).default(100_000),
  })
  .prefault({})

/**
 * GET /metrics in the Prometheus text format. It tells how many clients
 * connect and how often sign-ins fail: with env METRICS_TOKEN set it asks for
 * `Authorization: Bearer <token>`; without, keep /metrics off the public
 * ingress (deploy/nginx.conf does).
 */
const metricsSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
  })
  .prefault({})

export const configSchema = z
  .strictObject({
    /** The gateway's issuer, exactly as clients see it; env GATEWAY_PUBLIC_URL. */
    publicUrl: issuerUrl,
    /** Address to listen on; env PORT and HOST. */
    port: z.number().int().min(0).max(65_535).default(8080),
    host: z.string().min(1).default('0.0.0.0'),
    /** The protected MCP server (RFC 9728 `resource`); env MCP_RESOURCE. */
    mcpResource: secureUrl.refine((value) => !new URL(value).search, 'must not have a query'),
    upstream: upstreamSchema,
    redirectPresets,
    /**
     * Redirect URIs clients may register beyond the presets: exact URIs or patterns; env
     * ALLOWED_REDIRECT_URIS replaces this list (the presets stay as the file sets them).
     */
    allowedRedirectUris: z.array(redirectPattern).default([]),
    scopes: z
      .strictObject({
        /** Advertised in metadata and accepted from clients. */
        supported: z.array(scopeToken).min(1),
        /** Asked of the upstream when a client sends no scope (or an empty one). */
        default: z.array(scopeToken).min(1),
        /**
         * Client scope → the upstream scope(s) it stands for, space-separated ('' = not sent).
         * Scopes not listed go upstream as they are. Token responses name the client's scopes.
         */
        upstream: z.record(scopeToken, upstreamScopes).default({}),
        /** Adds offline_access upstream for clients that registered the refresh_token grant (for upstreams that only then issue refresh tokens). */
        addOfflineAccess: z.boolean().default(false),
      })
      .refine((s) => s.default.every((scope) => s.supported.includes(scope)), {
        message: 'every default scope must be in scopes.supported',
        path: ['default'],
      })
      .refine((s) => Object.keys(s.upstream).every((scope) => s.supported.includes(scope)), {
        message: 'every scope renamed here must be in scopes.supported',
        path: ['upstream'],
      }),
    lifetimes: z
      .strictObject({
        /** How long a browser has to decide on the consent page and come back from the upstream sign-in, in seconds. */
        transactionSeconds: z.number().int().min(5).max(3600).default(600),
        /** How long a gateway authorization code lives, in seconds (RFC 9700: short). */
        codeSeconds: z.number().int().min(5).max(60).default(60),
        /**
         * For how long a repeated code exchange (same code, same code_verifier, same client, as
         * ChatGPT sends) gets the first answer again instead of invalid_grant, in seconds.
         */
        codeRetrySeconds: z.number().int().min(1).max(60).default(10),
        /**
         * For how long a concurrent or retried refresh of the same refresh token gets the first
         * answer again, so that an upstream that rotates refresh tokens is called once, in seconds.
         */
        refreshRetrySeconds: z.number().int().min(1).max(60).default(10),
      })
      .prefault({}),
    registration: z
      .strictObject({
        /** Most redirect URIs one client may register. */
        maxRedirectUris: z.number().int().min(1).max(20).default(10),
        /**
         * `local`: the gateway registers clients itself and the upstream sees only
         * the gateway's own client. `upstream`: after the same checks, each
         * registration also registers a client at the upstream (RFC 7591), with
         * the gateway's callback as its redirect URI.
         */
        mode: z.enum(['local', 'upstream']).default('local'),
      })
      .prefault({}),
    /** Front mode: the gateway also answers at the MCP origin and proxies the MCP endpoint to the MCP server. */
    front: z
      .strictObject({
        enabled: z.boolean().default(false),
        /** The MCP server's own endpoint, e.g. http://mcp-server:3000/mcp (required when enabled). */
        mcpUpstream: internalUrl.optional(),
        /** Connect timeout towards the MCP server, in milliseconds. */
        connectTimeoutMs: z.number().int().min(100).max(60_000).default(5_000),
        /** Longest wait for the MCP server's response headers, in milliseconds (a tool call may take long). */
        headersTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(300_000),
        /** Longest silence inside a response body, in milliseconds; 0 = none, since SSE streams idle legitimately. */
        idleTimeoutMs: z.number().int().min(0).max(3_600_000).default(0),
      })
      .refine((front) => !front.enabled || front.mcpUpstream !== undefined, { message: 'is required when front.enabled is true', path: ['mcpUpstream'] })
      .prefault({}),
    consent: consentSchema,
    clientMetadataDocuments: clientMetadataDocumentsSchema,
    /** The shared store, used only when Redis is configured (env REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES); without it state lives in memory (one replica). */
    redis: redisSchema.prefault({}),
    memoryStore: memoryStoreSchema,
    server: serverSchema,
    limits: limitsSchema,
    metrics: metricsSchema,
  })
  // A request waiting on the upstream is silent towards the client: the idle timeout must not cut it.
  .refine((c) => c.server.connectionTimeoutMs > c.upstream.timeoutMs, {
    message: 'must be longer than upstream.timeoutMs',
    path: ['server', 'connectionTimeoutMs'],
  })
  .refine((config) => !config.clientMetadataDocuments.developmentAllowLoopback || isLoopbackHost(new URL(config.publicUrl).hostname), {
    message: 'may only be true when publicUrl is a loopback address (local development and tests, never production)',
    path: ['clientMetadataDocuments', 'developmentAllowLoopback'],
  })
  .refine((c) => c.allowedRedirectUris.length > 0 || Object.values(c.redirectPresets).some(Boolean), {
    message: 'must allow at least one redirect URI: switch on a preset in redirectPresets or list one here',
    path: ['allowedRedirectUris'],
  })
  .refine((config) => !config.front.enabled || isFreeMcpPath(new URL(config.mcpResource).pathname), {
    message: 'in front mode the MCP endpoint must have its own path, not one the gateway answers (/authorize, /token, /.well-known/…)',
    path: ['mcpResource'],
  })

function isFreeMcpPath(pathname: string) {
  const path = pathname.replace(/\/$/, '') || '/'
  return path !== '/' && !GATEWAY_PATHS.includes(path) && !path.startsWith('/.well-known/')
}

/** Everything the file and the environment configure except the secrets. */
export type Settings = Readonly<z.infer<typeof configSchema>>

export type Config = Readonly<
  z.infer<typeof configSchema> & {
    /** Keys from GATEWAY_SECRET: the first seals and signs, all of them open and verify. */
    secrets: readonly string[]
    upstream: z.infer<typeof upstreamSchema> & {
      clientSecret: string
      /** RFC 7591 §3 initial access token for the upstream's registration endpoint; env UPSTREAM_REGISTRATION_TOKEN only. */
      registrationToken?: string | undefined
    }
    /**
     * `connection` from the environment (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES): set means several
     * replicas share Redis. `waitReplicas` and `waitTimeoutMs` are settled by then: the file's, else their defaults.
     */
    redis: Omit<z.infer<typeof redisSchema>, 'waitReplicas' | 'waitTimeoutMs'> & { waitReplicas: number; waitTimeoutMs: number; connection?: RedisConnection | undefined }
    /** `token` from env METRICS_TOKEN. */
    metrics: z.infer<typeof metricsSchema> & { token?: string | undefined }
  }
>
