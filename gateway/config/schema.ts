/**
 * The configuration's schema: every ops-facing key, its rule, default and
 * description (`.describe()`, examples in `.meta()`). load.ts reads the file
 * and the environment into it once at start-up; `npm run docs` writes
 * docs/configuration.md and the commented config/gateway.yaml from it.
 */
import { z } from 'zod'
import { isLoopbackHost, parsePattern } from '../policy/redirect-uri.ts'
import { parseRange } from '../policy/addresses.ts'

/** `http` only where the host is loopback (local development, tests); https everywhere else. */
const secureUrl = z
  .string()
  .refine((value) => URL.canParse(value), { message: 'must be an absolute URL', abort: true })
  .refine((value) => {
    const url = new URL(value)
    return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))
  }, 'must be https (plain http is accepted only for loopback hosts)')
  .refine((value) => !new URL(value).hash, 'must not have a fragment')

/** An issuer: no query (RFC 8414 §2). */
const issuerUrl = secureUrl.refine((value) => !new URL(value).search, 'must not have a query')

/** The gateway's own issuer has no trailing slash (RFC 8414 §2): one written is removed. */
const withoutTrailingSlash = (value: string) => value.replace(/\/+$/, '')

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
const GATEWAY_PATHS = ['/authorize', '/token', '/register', '/revoke', '/callback', '/consent', '/connections', '/connections/disconnect', '/connections/sign-out', '/healthz', '/readyz', '/metrics', '/admin']

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be a scope token (RFC 6749 §3.3)')

const upstreamSchema = z
  .strictObject({
    // Kept as written: discovery tolerates a trailing slash either way, but without
    // discovery it is compared with the `iss` the upstream sends, exactly.
    issuer: issuerUrl
      .describe(
        "Issuer of NeonPanel's OAuth server. Discovered with RFC 8414, then OpenID discovery, each with the issuer as written and then with a trailing slash added or removed.",
      )
      .meta({ examples: ['https://my.neonpanel.com'] }),
    clientId: z
      .string()
      .min(1)
      .describe("The one client NeonPanel registered for the gateway, with <publicUrl>/callback as its only redirect URI. Its secret comes only from env UPSTREAM_CLIENT_SECRET.")
      .meta({ examples: ['oauth-gateway'] }),
    tokenEndpointAuthMethod: z
      .enum(['auto', 'client_secret_basic', 'client_secret_post'])
      .default('auto')
      .describe("How the gateway authenticates to the upstream's token endpoint. `auto`: client_secret_basic when the upstream's metadata lists it (or lists nothing), else client_secret_post."),
    endpoints: z
      .strictObject({
        authorization_endpoint: secureUrl.describe("The upstream's authorization endpoint."),
        token_endpoint: secureUrl.describe("The upstream's token endpoint."),
        revocation_endpoint: secureUrl.optional().describe("The upstream's RFC 7009 revocation endpoint, which /revoke calls."),
        registration_endpoint: secureUrl.optional().describe("The upstream's RFC 7591 registration endpoint, used when registration.mode is `upstream`."),
        userinfo_endpoint: secureUrl.optional().describe("The upstream's OpenID Connect userinfo endpoint, for the users of grants (upstream.identitySource)."),
        introspection_endpoint: secureUrl.optional().describe("The upstream's RFC 7662 introspection endpoint, for upstream.identitySource: introspection."),
      })
      .optional()
      .describe("Endpoints of an upstream without discovery; when set, discovery is skipped and `issuer` must be written exactly as the upstream's `iss` reads.")
      .meta({
        examples: [
          {
            authorization_endpoint: 'https://my.neonpanel.com/oauth/authorize',
            token_endpoint: 'https://my.neonpanel.com/oauth/token',
            revocation_endpoint: 'https://my.neonpanel.com/oauth/revoke',
          },
        ],
      }),
    timeoutMs: z
      .number()
      .int()
      .min(100)
      .max(120_000)
      .default(10_000)
      .describe('Deadline of every upstream request, in milliseconds, from connect to the last byte of the body: a body that trickles in is cut off at it (504 to the client).'),
    maxResponseBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024)
      .describe('Largest upstream answer, in bytes (1 MiB); a larger one is dropped while it streams and answered 502 server_error.'),
    connectTimeoutMs: z.number().int().min(100).max(60_000).default(5_000).describe('Connect timeout towards the upstream, in milliseconds.'),
    maxConnections: z.number().int().min(1).max(1024).default(64).describe('Most open connections to the upstream.'),
    resource: upstreamResource
      .prefault('drop')
      .describe(
        'What the upstream gets for the RFC 8707 `resource`: `drop` (not sent), `forward` (mcpResource), `{ mode: map, value }` (resource=value) or `{ mode: audience, value }` (audience=value, default mcpResource). Every mode but drop sends it on authorize, code exchange and refresh.',
      ),
    acceptOriginRootResource: z
      .boolean()
      .default(true)
      .describe(
        "Accept the origin root of mcpResource (https://mcp.neonpanel.com/ for https://mcp.neonpanel.com/mcp) as the `resource` a client sends on authorize and token, as ChatGPT is reported to do; like mcpResource with a trailing slash, it is canonicalised to mcpResource before the code is bound and the upstream is sent it. false: mcpResource only, with or without a trailing slash.",
      ),
    userClaim: z
      .string()
      .min(1)
      .max(100)
      .default('sub')
      .describe('The claim that names the user a grant belongs to, read from the identity source (identitySource); e.g. `email` or `preferred_username` where `sub` is not what the upstream keeps stable.'),
    identitySource: z
      .enum(['auto', 'id_token', 'userinfo', 'introspection', 'none'])
      .default('auto')
      .describe(
        "Where the user of a grant comes from. `auto`: the ID token when the upstream is OpenID (it sends one; name and email from userinfo when the ID token lacks them), else the userinfo endpoint when its metadata names one. `introspection`: RFC 7662 on the access token at the upstream's introspection_endpoint. `none`: grants carry no user (ops still revoke them by client, and the connected-apps page says it is unavailable). `npm run doctor` names the source in use.",
      ),
  })
  .describe("NeonPanel's OAuth server, which the gateway reaches as one confidential client.")

const redisSchema = z.strictObject({
  keyPrefix: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[\x21-\x7E]+$/, 'must be printable ASCII without spaces')
    .default('oauth-gateway:')
    .describe('Put before every key the gateway writes to Redis, so several gateways (or other applications) can share one Redis; on a cluster too.'),
  commandTimeoutMs: z
    .number()
    .int()
    .min(50)
    .max(30_000)
    .default(1000)
    .describe('How long a request waits for Redis before it is answered 503 temporarily_unavailable, in milliseconds.'),
  waitReplicas: z
    .number()
    .int()
    .min(0)
    .max(16)
    .optional()
    .describe(
      'Replicas that must acknowledge a durable write (a code\'s spent mark, grants, revocations, blocks) before the gateway reports it done: written to the master, then `WAIT waitReplicas waitTimeoutMs`; fewer acknowledgements answer 503 rather than a success a failover could forget. Default: 1 with REDIS_SENTINELS or REDIS_CLUSTER_NODES, 0 with REDIS_URL (one node, no replica to wait for). 0 turns the wait off.',
    )
    .meta({ examples: [1] }),
  waitTimeoutMs: z
    .number()
    .int()
    .min(1)
    .max(30_000)
    .optional()
    .describe('How long a durable write waits for its replicas, in milliseconds; shorter than commandTimeoutMs. Default: half of commandTimeoutMs (500 with its default).')
    .meta({ examples: [500] }),
})
  .refine((redis) => redis.waitTimeoutMs === undefined || redis.waitTimeoutMs < redis.commandTimeoutMs, {
    message: 'must be shorter than redis.commandTimeoutMs (the WAIT itself must not time out)',
    path: ['waitTimeoutMs'],
  })

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

/** A preset switch: off unless switched on; the shipped file switches every preset on. */
const preset = (description: string) => z.boolean().default(false).describe(description).meta({ examples: [true] })

/** Which client presets' redirect URIs are allowed (see gateway/policy/presets.ts). */
const redirectPresets = z
  .strictObject({
    chatgpt: preset('https://chatgpt.com/connector/oauth/<id>, the legacy https://chatgpt.com/connector_platform_oauth_redirect, and GPT Actions (https://chat.openai.com/aip/g-<id>/oauth/callback and its chatgpt.com twin).'),
    claude: preset('https://claude.ai/api/mcp/auth_callback and https://claude.com/api/mcp/auth_callback.'),
    loopback: preset('http://localhost, 127.0.0.1 and [::1] on any port and any path (RFC 8252 §7.3): Claude Code, VS Code and other native clients. PKCE protects the code.'),
    vscodeWeb: preset('https://vscode.dev/redirect and https://insiders.vscode.dev/redirect.'),
    cursor: preset('cursor://anysphere.cursor-mcp/oauth/callback.'),
    inspector: preset('MCP Inspector: http://localhost:<any port>/oauth/callback and /oauth/callback/debug.'),
  })
  .prefault({})
  .describe("Redirect URIs clients may register, checked again at every authorization: each preset allows one client family's real redirect URIs. At least one preset or one allowedRedirectUris entry is required.")

/** Space-separated upstream scopes ('' for none). */
const upstreamScopes = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$|^$/, 'must be space-separated scope tokens, or empty')

/**
 * The consent page (MCP authorization: a proxy with one upstream client must ask
 * the user before it sends them upstream for a client they have not approved).
 */
const consentSchema = z
  .strictObject({
    rememberDays: z.number().int().min(0).max(400).default(30).describe('How long an approval is remembered in the browser, in days; 0 asks every time.'),
    trustedRedirectUris: z
      .array(redirectPattern.refine((value) => !isLoopbackPattern(value), 'must not be a loopback URI: any program on the user\'s machine can listen there'))
      .default([])
      .describe(
        "Redirect URIs (exact or patterns, as in allowedRedirectUris) whose clients skip the page: a code can then only reach that address, so list only addresses whose owner you trust with every user's account. Loopback URIs are refused.",
      ),
    trustedClientIds: z.array(z.string().min(1)).default([]).describe('Client ids that skip the page, compared exactly: in practice the https URLs of client metadata documents.'),
  })
  .prefault({})
  .describe(
    'The consent page: before the gateway sends a browser to NeonPanel for a client that browser has not approved, it asks the user. Approvals live in a sealed HttpOnly cookie bound to the client id and redirect URI.',
  )

/** The connected-apps page at /connections (docs/connected-apps.md). */
const connectionsSchema = z
  .strictObject({
    sessionMinutes: z
      .number()
      .int()
      .min(1)
      .max(1440)
      .default(30)
      .describe("How long the page's sign-in lasts, in minutes: its sealed HttpOnly, SameSite=Lax session cookie (__Host-gateway-session and Secure on https). Then the user signs in again."),
  })
  .prefault({})
  .describe('The connected-apps page, <publicUrl>/connections: a NeonPanel user signs in there through the upstream, sees every app they connected and disconnects one. The consent and error pages link to it.')

/** Client ID Metadata Documents (MCP 2025-11-25; draft-ietf-oauth-client-id-metadata-document). */
const clientMetadataDocumentsSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Accept https URLs as client ids and advertise client_id_metadata_document_supported.'),
    maxBytes: z.number().int().min(512).max(65_536).default(5120).describe('Most bytes read of a document; the draft recommends 5 kB.'),
    jwksMaxBytes: z.number().int().min(1024).max(262_144).default(32_768).describe("Most bytes read of a key set named by a document's jwks_uri."),
    timeoutMs: z.number().int().min(100).max(30_000).default(5_000).describe('Whole-fetch timeout (connect, headers and body), in milliseconds.'),
    defaultCacheSeconds: z.number().int().min(0).max(86_400).default(300).describe('Cache lifetime when the answer names none (no max-age, no Expires), in seconds.'),
    maxCacheSeconds: z.number().int().min(0).max(86_400).default(3600).describe("Upper bound on any cache lifetime, whatever the answer's Cache-Control says, in seconds."),
    maxCachedDocuments: z.number().int().min(0).max(100_000).default(1000).describe('Most documents and key sets one replica puts into the shared store at a time.'),
    developmentAllowLoopback: z
      .boolean()
      .default(false)
      .describe('DEVELOPMENT ONLY, never in production: allow documents on loopback addresses (and plain http there), for local tests. Refused unless publicUrl is loopback too.'),
  })
  .prefault({})
  .describe(
    'Client ID Metadata Documents (MCP 2025-11-25): a client whose client_id is an https URL publishes its metadata there; the gateway fetches it (https only, never a private address, no redirects), caches it and checks its redirect URIs against the allowlist.',
  )

/** Largest request body, in bytes, per endpoint that reads one; larger bodies are answered 413 `invalid_request`. */
const bodyLimitsSchema = z
  .strictObject({
    register: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024).describe('POST /register: JSON client metadata.'),
    token: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024).describe('POST /token: a form with a code or refresh token, the verifier and client credentials.'),
    revoke: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024).describe('POST /revoke: a form with a token and client credentials.'),
    authorize: z.number().int().min(1024).max(1024 * 1024).default(32 * 1024).describe('POST /authorize: the authorization request as a form.'),
    admin: z.number().int().min(1024).max(1024 * 1024).default(16 * 1024).describe('POST /admin/*: the Admin API\'s JSON bodies (a client id, a block), when env ADMIN_TOKEN switches it on.'),
  })
  .prefault({})
  .describe('Largest request body, in bytes, per endpoint that reads one; a larger body is answered 413 invalid_request.')

/** Limits that protect the gateway from slow and oversized requests (Node's http server and Fastify settings). */
const serverSchema = z
  .strictObject({
    headersTimeoutMs: z
      .number()
      .int()
      .min(100)
      .max(120_000)
      .default(10_000)
      .describe('Time a client has to send its request headers, in milliseconds; then 408 and the connection is closed (slowloris). At most server.requestTimeoutMs.'),
    requestTimeoutMs: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(30_000)
      .describe('Time a client has to send its whole request, headers and body, in milliseconds; then 408 and the connection is closed. Not a limit on the answer.'),
    keepAliveTimeoutMs: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(72_000)
      .describe('How long an idle keep-alive connection stays open, in milliseconds; keep it longer than the idle timeout of the load balancer in front (often 60 s).'),
    connectionTimeoutMs: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(60_000)
      .describe('A connection with no traffic at all during a request is closed after this long, in milliseconds; must be longer than upstream.timeoutMs.'),
    maxParameters: z
      .number()
      .int()
      .min(10)
      .max(10_000)
      .default(100)
      .describe('Most parameters in one query string, form or registration; a repeated parameter counts each time.'),
    bodyLimits: bodyLimitsSchema,
    trustProxy: z
      .union([z.number().int().min(0).max(10), z.array(z.string().min(1)).min(1)])
      .default(0)
      .describe(
        "Proxies whose X-Forwarded-For is believed, for the client address rate limits count by: a number of hops (1 behind one load balancer) or the proxies' addresses and CIDR ranges. 0: the peer address. Never more hops than there are proxies.",
      ),
    shutdownTimeoutMs: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(10_000)
      .describe('On SIGTERM, how long in-flight requests may take to finish before the process exits anyway, in milliseconds.'),
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])
      .default('info')
      .describe('pino level of the log; `debug` adds the request lines of discovery documents, probes and /metrics.'),
  })
  .prefault({})
  .refine((s) => s.headersTimeoutMs <= s.requestTimeoutMs, { message: 'must not be longer than server.requestTimeoutMs', path: ['headersTimeoutMs'] })
  .describe('Limits that protect the gateway from slow and oversized requests (408, 413 and 400 as OAuth JSON errors), and the process settings.')

/** At most `max` requests per `windowSeconds`; `max: 0` switches this limit off. */
const rateLimit = z.strictObject({
  max: z.number().int().min(0).max(1_000_000).describe('Most requests per window; 0 switches this limit off.'),
  windowSeconds: z.number().int().min(1).max(86_400).default(60).describe('Length of the fixed window, in seconds.'),
})

const perIp = (max: number) => rateLimit.default({ max, windowSeconds: 60 }).describe('Requests per client address.')
const perClient = (max: number) => rateLimit.default({ max, windowSeconds: 60 }).describe('Requests per registered client id; a metadata document\'s client id is not counted here (it speaks for every user of its vendor).')
const perTrustedIp = (max: number) =>
  rateLimit.default({ max, windowSeconds: 60 }).describe('Requests per client address inside `limits.trustedRanges`, in place of `perIp` (a hosted client\'s egress address speaks for many users).')
const perFamily = (max: number) =>
  rateLimit
    .default({ max, windowSeconds: 60 })
    .describe('Requests per client family: the redirect URI preset (chatgpt, claude, loopback, …, or other) of the redirect URI registered, or of the client asking.')
const globalCeiling = (max: number) => rateLimit.default({ max, windowSeconds: 60 }).describe('Requests from everyone together: the ceiling that holds whatever the addresses and families.')

const addressRange = z.string().refine((value) => parseRange(value) !== undefined, 'must be an IPv4 or IPv6 address or CIDR range, e.g. 203.0.113.0/24 or 2001:db8::/32')

const limitsSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Switches every rate limit on or off.'),
    trustedRanges: z
      .array(addressRange)
      .max(1000)
      .default([])
      .describe(
        'Address ranges (CIDR, IPv4 or IPv6) of hosted clients\' servers, such as ChatGPT\'s or Claude\'s egress, whose addresses each speak for many users: POST /register and /token count them by `perTrustedIp` instead of `perIp`. Parsed once at start-up; the client address is the peer\'s, or X-Forwarded-For\'s behind a trusted proxy (server.trustProxy). Ask the vendor for its published egress ranges; e.g. [203.0.113.0/24, 2001:db8:4000::/40].',
      ),
    register: z
      .strictObject({ perIp: perIp(60), perTrustedIp: perTrustedIp(600), perFamily: perFamily(1200), global: globalCeiling(6000) })
      .prefault({})
      .describe('POST /register: per address (a new client has no id yet), per family of its redirect URI, and a global ceiling. Each is counted only when the narrower ones pass; the defaults grow from one address to a family (a vendor\'s egress is several addresses: one may carry half its family\'s limit) to everyone (five families at their limit).'),
    authorize: z.strictObject({ perIp: perIp(60), perClient: perClient(600) }).prefault({}).describe('/authorize: browsers, one user each.'),
    token: z
      .strictObject({ perIp: perIp(1200), perTrustedIp: perTrustedIp(6000), perClient: perClient(120), perFamily: perFamily(12_000), global: globalCeiling(60_000) })
      .prefault({})
      .describe('POST /token and /revoke: hosted clients (ChatGPT, Claude) call from a few server addresses for all their users, so the address limit is generous and the client limit stops a runaway registered client (a metadata document\'s client id, one for all its vendor\'s users, has none); per family and a global ceiling as for registration, with the same proportions.'),
  })
  .prefault({})
  .describe(
    'Rate limits per client address, client id, client family and overall, in fixed windows of `windowSeconds` (default 60), counted in Redis when Redis is configured (so across replicas), in memory otherwise. Counted narrowest first (address and client, then family, then global): a request refused by one limit does not count against the broader ones. Excess requests get 429 temporarily_unavailable with Retry-After and a description naming the limit; `max: 0` switches a rule off.',
  )

export type RateLimitRule = z.infer<typeof rateLimit>

/**
 * Each sign-in leaves three or four entries in the memory store, each until it
 * expires: the consent answer's mark (when the page was shown) and its state's
 * mark, both for `lifetimes.transactionSeconds`, its code's spent mark
 * (`codeSeconds` + 60 s) and the code's answer for repeats (`codeRetrySeconds`).
 * Hence: with the default lifetimes, 100,000 entries hold 75 to 135 sign-ins a
 * second, sustained.
 */
const memoryStoreSchema = z
  .strictObject({
    maxEntries: z
      .number()
      .int()
      .min(10)
      .max(10_000_000)
      .default(100_000)
      .describe('Most live entries; with the default lifetimes 100,000 hold 75 to 135 sign-ins a second, sustained. When full, requests that need a new entry get 503 rather than forget a mark.'),
  })
  .prefault({})
  .describe('The in-memory store, used when Redis is not configured (one replica only).')

const grantsSchema = z
  .strictObject({
    maxIdleDays: z.number().int().min(1).max(3650).default(90).describe('A grant not refreshed for this many days ends; its client must connect again.'),
    maxAgeDays: z.number().int().min(1).max(3650).default(365).describe('A grant ends this many days after it was created, however much it is used.'),
  })
  .prefault({})
  .refine((g) => g.maxIdleDays <= g.maxAgeDays, { message: 'must not be longer than grants.maxAgeDays', path: ['maxIdleDays'] })
  .describe(
    "Grants: one per connection (a code exchange and the refreshes after it), which ops and users can list and end (docs/connections.md). A grant also ends with the upstream refresh token's own lifetime when the upstream tells it.",
  )

const stateSchema = z
  .strictObject({
    path: z
      .string()
      .min(1)
      .default('data/gateway.sqlite')
      .describe('The SQLite file, created on first start with its directory; keep it on a persistent volume.'),
  })
  .prefault({})
  .describe(
    'Durable state without Redis: grants, blocks, revocations and the client list in a SQLite file (node:sqlite, no server to run), so only one replica may run. With Redis configured (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES) they live in Redis instead, which then needs AOF persistence.',
  )

const metricsSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Serve GET /metrics.'),
  })
  .prefault({})
  .describe(
    'GET /metrics in the Prometheus text format. It tells how many clients connect and how often sign-ins fail: set env METRICS_TOKEN to require `Authorization: Bearer <token>`, or keep /metrics off the public ingress.',
  )

export const configSchema = z
  .strictObject({
    publicUrl: issuerUrl
      .describe("The gateway's issuer, exactly as clients see it: no path, no trailing slash.")
      .meta({ examples: ['https://oauth.neonpanel.com'] })
      .transform(withoutTrailingSlash),
    port: z.number().int().min(0).max(65_535).default(8080).describe('Port to listen on.'),
    host: z.string().min(1).default('0.0.0.0').describe('Address to listen on.'),
    mcpResource: secureUrl
      .refine((value) => !new URL(value).search, 'must not have a query')
      .describe('The protected MCP server (RFC 9728 `resource`): the gateway serves its protected resource metadata and accepts `resource` only for this URL.')
      .meta({ examples: ['https://mcp.neonpanel.com/mcp'] }),
    upstream: upstreamSchema,
    redirectPresets,
    allowedRedirectUris: z
      .array(redirectPattern)
      .default([])
      .describe(
        'More redirect URIs clients may register, beyond the presets: exact URIs or patterns (see docs/clients.md). Applied live, without a restart. The environment variable replaces this list; the presets stay as the file sets them.',
      ),
    scopes: z
      .strictObject({
        supported: z.array(scopeToken).min(1).describe('Scopes advertised in metadata and accepted from clients.').meta({ examples: [['openid', 'profile', 'email', 'offline_access']] }),
        default: z
          .array(scopeToken)
          .min(1)
          .describe('Asked for when a client sends no scope or an empty one (ChatGPT sends scope=).')
          .meta({ examples: [['openid', 'profile', 'email', 'offline_access']] }),
        upstream: z
          .record(scopeToken, upstreamScopes)
          .default({})
          .describe("Client scope → the upstream scope(s) it stands for, space-separated ('' = not sent), e.g. { mcp: neonpanel.api }. Scopes not listed go upstream as they are; token responses name the client's scopes."),
        addOfflineAccess: z
          .boolean()
          .default(false)
          .describe('Add offline_access upstream for clients that registered the refresh_token grant, for upstreams that only then issue refresh tokens.'),
      })
      .describe('The scopes clients see, and what the gateway asks of the upstream for them.')
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
        transactionSeconds: z
          .number()
          .int()
          .min(5)
          .max(3600)
          .default(600)
          .describe('How long a browser has to answer the consent page, and then to come back from the upstream sign-in, in seconds (each).'),
        codeSeconds: z.number().int().min(5).max(60).default(60).describe('How long a gateway authorization code lives, in seconds (RFC 9700: short).'),
        codeRetrySeconds: z
          .number()
          .int()
          .min(1)
          .max(60)
          .default(10)
          .describe('For how long a repeated code exchange (same code, code_verifier and client, as ChatGPT sends) gets the first answer again instead of invalid_grant, in seconds.'),
        refreshRetrySeconds: z
          .number()
          .int()
          .min(1)
          .max(60)
          .default(10)
          .describe('For how long concurrent or retried refreshes of one refresh token share one upstream call and get its answer, in seconds (for upstreams that rotate refresh tokens).'),
      })
      .prefault({})
      .describe('How long the short-lived state of a sign-in lives.'),
    registration: z
      .strictObject({
        maxRedirectUris: z.number().int().min(1).max(20).default(10).describe('Most redirect URIs one client may register.'),
        mode: z
          .enum(['local', 'upstream'])
          .default('local')
          .describe(
            "`local`: the gateway registers clients itself and the upstream sees only the gateway's own client. `upstream`: after the same checks, each registration also registers a client at the upstream (RFC 7591) whose one redirect URI is <publicUrl>/callback.",
          ),
      })
      .prefault({})
      .describe('Dynamic client registration (RFC 7591) at POST /register.'),
    front: z
      .strictObject({
        enabled: z.boolean().default(false).describe('Proxy the MCP endpoint (the path of mcpResource) to front.mcpUpstream.'),
        mcpUpstream: internalUrl
          .optional()
          .describe("The MCP server's own endpoint, required when enabled; a cluster-internal address, so plain http is accepted.")
          .meta({ examples: ['http://mcp-server:3000/mcp'] }),
        connectTimeoutMs: z.number().int().min(100).max(60_000).default(5_000).describe('Connect timeout towards the MCP server, in milliseconds.'),
        headersTimeoutMs: z
          .number()
          .int()
          .min(1_000)
          .max(3_600_000)
          .default(300_000)
          .describe("Longest wait for the MCP server's response headers, in milliseconds (a tool call may be slow)."),
        idleTimeoutMs: z
          .number()
          .int()
          .min(0)
          .max(3_600_000)
          .default(0)
          .describe('Longest silence inside a response body, in milliseconds; 0 = no limit, since event streams may idle for as long as they are open.'),
      })
      .refine((front) => !front.enabled || front.mcpUpstream !== undefined, { message: 'is required when front.enabled is true', path: ['mcpUpstream'] })
      .prefault({})
      .describe('Front mode: the gateway also stands in front of the MCP server and proxies the MCP endpoint to it, streaming requests and responses (SSE included) without buffering.'),
    consent: consentSchema,
    connections: connectionsSchema,
    clientMetadataDocuments: clientMetadataDocumentsSchema,
    redis: redisSchema
      .prefault({})
      .describe(
        'The shared store, used only when the environment names Redis: REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES (they may carry passwords, so never from the file; docs/redis.md). Without it state lives in memory and only one replica may run.',
      ),
    memoryStore: memoryStoreSchema,
    grants: grantsSchema,
    state: stateSchema,
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
    /** The Admin API (routes/admin/): on only when env ADMIN_TOKEN is set, the bearer token every call must send. */
    admin: { token?: string | undefined }
  }
>
