/**
 * Configuration: read once at start-up from the YAML file and the environment,
 * validated with zod, then frozen. Every ops-facing key is described here; the
 * commented example in config/gateway.yaml agrees with it.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { isLoopbackHost, parsePattern } from './redirect-uri.ts'

export const DEFAULT_CONFIG_PATH = 'config/gateway.yaml'

/** `http` only where the host is loopback (local development, tests); https everywhere else. */
const secureUrl = z
  .string()
  .refine((value) => URL.canParse(value), { message: 'must be an absolute URL', abort: true })
  .refine((value) => {
    const url = new URL(value)
    return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))
  }, 'must be https (plain http is accepted only for loopback hosts)')
  .refine((value) => !new URL(value).hash, 'must not have a fragment')

/** An issuer or public URL: no query, and no trailing slash after a path (RFC 8414 §2). */
const issuerUrl = secureUrl
  .refine((value) => !new URL(value).search, 'must not have a query')
  .transform((value) => value.replace(/\/+$/, ''))

const redirectPattern = z.string().superRefine((value, ctx) => {
  try {
    parsePattern(value)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
  }
})

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be a scope token (RFC 6749 §3.3)')

const upstreamSchema = z.strictObject({
  /** Issuer of NeonPanel's OAuth server; env UPSTREAM_ISSUER. Discovered with RFC 8414, then OpenID discovery. */
  issuer: issuerUrl,
  /** The one client NeonPanel registered for the gateway; env UPSTREAM_CLIENT_ID. Its secret comes only from UPSTREAM_CLIENT_SECRET. */
  clientId: z.string().min(1),
  /** How the gateway authenticates to the upstream token endpoint; `auto` picks from the upstream's metadata. */
  tokenEndpointAuthMethod: z.enum(['auto', 'client_secret_basic', 'client_secret_post']).default('auto'),
  /** Explicit endpoints for an upstream without discovery; when set, discovery is skipped. */
  endpoints: z
    .strictObject({
      authorization_endpoint: secureUrl,
      token_endpoint: secureUrl,
      revocation_endpoint: secureUrl.optional(),
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
})

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
  })
  .prefault({})
  .refine((s) => s.headersTimeoutMs <= s.requestTimeoutMs, { message: 'must not be longer than server.requestTimeoutMs', path: ['headersTimeoutMs'] })

const configSchema = z
  .strictObject({
    /** The gateway's issuer, exactly as clients see it; env GATEWAY_PUBLIC_URL. */
    publicUrl: issuerUrl,
    /** Address to listen on; env PORT and HOST. */
    port: z.number().int().min(0).max(65_535).default(8080),
    host: z.string().min(1).default('0.0.0.0'),
    /** The protected MCP server (RFC 9728 `resource`); env MCP_RESOURCE. */
    mcpResource: secureUrl.refine((value) => !new URL(value).search, 'must not have a query'),
    upstream: upstreamSchema,
    /** Redirect URIs clients may register: exact URIs or patterns; env ALLOWED_REDIRECT_URIS replaces the list. */
    allowedRedirectUris: z.array(redirectPattern).min(1, 'must allow at least one redirect URI'),
    scopes: z
      .strictObject({
        /** Advertised in metadata and accepted from clients. */
        supported: z.array(scopeToken).min(1),
        /** Asked of the upstream when a client sends no scope (or an empty one). */
        default: z.array(scopeToken).min(1),
      })
      .refine((s) => s.default.every((scope) => s.supported.includes(scope)), {
        message: 'every default scope must be in scopes.supported',
        path: ['default'],
      }),
    lifetimes: z
      .strictObject({
        /** How long a browser has to come back from the upstream sign-in, in seconds. */
        transactionSeconds: z.number().int().min(60).max(3600).default(600),
        /** How long a gateway authorization code lives, in seconds (RFC 9700: short). */
        codeSeconds: z.number().int().min(5).max(60).default(60),
      })
      .prefault({}),
    registration: z
      .strictObject({
        /** Most redirect URIs one client may register. */
        maxRedirectUris: z.number().int().min(1).max(20).default(10),
      })
      .prefault({}),
    server: serverSchema,
  })
  // A request waiting on the upstream is silent towards the client: the idle timeout must not cut it.
  .refine((c) => c.server.connectionTimeoutMs > c.upstream.timeoutMs, {
    message: 'must be longer than upstream.timeoutMs',
    path: ['server', 'connectionTimeoutMs'],
  })

export type Config = Readonly<
  z.infer<typeof configSchema> & {
    /** Keys from GATEWAY_SECRET: the first seals and signs, all of them open and verify. */
    secrets: readonly string[]
    upstream: z.infer<typeof upstreamSchema> & { clientSecret: string }
  }
>

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const list = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)

/** Environment variables that override the file, mapped onto the file's shape. */
function environmentOverrides(env: NodeJS.ProcessEnv, file: Record<string, any>) {
  const merged = structuredClone(file)
  merged.upstream ??= {}
  if (env.PORT !== undefined) merged.port = /^\d+$/.test(env.PORT) ? Number(env.PORT) : env.PORT
  if (env.HOST) merged.host = env.HOST
  if (env.GATEWAY_PUBLIC_URL) merged.publicUrl = env.GATEWAY_PUBLIC_URL
  if (env.MCP_RESOURCE) merged.mcpResource = env.MCP_RESOURCE
  if (env.UPSTREAM_ISSUER) merged.upstream.issuer = env.UPSTREAM_ISSUER
  if (env.UPSTREAM_CLIENT_ID) merged.upstream.clientId = env.UPSTREAM_CLIENT_ID
  if (env.ALLOWED_REDIRECT_URIS) merged.allowedRedirectUris = list(env.ALLOWED_REDIRECT_URIS)
  return merged
}

function describeIssues(error: z.ZodError, where: string) {
  const lines = error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  return `invalid configuration (${where}):\n${lines.join('\n')}`
}

/**
 * Validates a parsed config file plus the environment. Pure: tests call it
 * with objects; `loadConfig` adds the file.
 */
export function parseConfig(file: unknown, env: NodeJS.ProcessEnv = {}, where = 'config'): Config {
  if (file === null || typeof file !== 'object' || Array.isArray(file)) {
    throw new ConfigError(`invalid configuration (${where}): the file must hold a mapping of keys`)
  }
  const result = configSchema.safeParse(environmentOverrides(env, file))
  if (!result.success) throw new ConfigError(describeIssues(result.error, where))

  const secrets = list(env.GATEWAY_SECRET ?? '')
  const problems: string[] = []
  if (secrets.length === 0) problems.push('  GATEWAY_SECRET: is required (comma-separated keys, first one signs)')
  else if (secrets.some((secret) => secret.length < 32)) {
    problems.push('  GATEWAY_SECRET: every key must be at least 32 characters')
  }
  const clientSecret = env.UPSTREAM_CLIENT_SECRET ?? ''
  if (!clientSecret) problems.push('  UPSTREAM_CLIENT_SECRET: is required (the gateway client secret at the upstream)')
  if (problems.length) throw new ConfigError(`invalid configuration (environment):\n${problems.join('\n')}`)

  const config = { ...result.data, secrets, upstream: { ...result.data.upstream, clientSecret } }
  return deepFreeze(config)
}

/** Reads GATEWAY_CONFIG (default config/gateway.yaml) and the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const path = resolve(env.GATEWAY_CONFIG ?? DEFAULT_CONFIG_PATH)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read the configuration file ${path}: ${(err as Error).message}`)
  }
  let file: unknown
  try {
    file = parseYaml(text) ?? {}
  } catch (err) {
    throw new ConfigError(`the configuration file ${path} is not valid YAML: ${(err as Error).message}`)
  }
  return parseConfig(file, env, path)
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
