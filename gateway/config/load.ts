/**
 * Configuration, read once at start-up from the YAML file and the environment,
 * validated against schema.ts, then frozen. Secrets come only from the
 * environment.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { configSchema, type Config, type RedisConnection, type RedisNode, type Settings } from './schema.ts'

export const DEFAULT_CONFIG_PATH = 'config/gateway.yaml'

export class ConfigError extends Error {
  override name = 'ConfigError'
}

const list = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)

/** An environment variable that overrides one key of the file. */
export interface OverrideVariable {
  name: string
  /** The dotted key it sets. */
  key: string
  /** How the text is written, when not as the key's own value. */
  format?: string
  /** The value for the key; undefined leaves the file's value. */
  read: (text: string) => unknown
}

/** An environment variable with no key in the file: the secrets and where the file is. */
export interface EnvironmentOnlyVariable {
  name: string
  required?: boolean
  description: string
}

const text = (value: string) => value || undefined
const hopsOrList = (value: string) => (/^\d+$/.test(value) ? Number(value) : list(value))

/** The environment variables that override the file, in the order they are documented. */
export const OVERRIDE_VARIABLES: readonly OverrideVariable[] = [
  { name: 'GATEWAY_PUBLIC_URL', key: 'publicUrl', read: text },
  // An empty PORT is an error, not the file's port.
  { name: 'PORT', key: 'port', read: (value) => (/^\d+$/.test(value) ? Number(value) : value) },
  { name: 'HOST', key: 'host', read: text },
  { name: 'MCP_RESOURCE', key: 'mcpResource', read: text },
  { name: 'UPSTREAM_ISSUER', key: 'upstream.issuer', read: text },
  { name: 'UPSTREAM_CLIENT_ID', key: 'upstream.clientId', read: text },
  { name: 'ALLOWED_REDIRECT_URIS', key: 'allowedRedirectUris', format: 'comma-separated; replaces the list (edits of the file then have no effect)', read: (value) => (value ? list(value) : undefined) },
  { name: 'GATEWAY_STATE_PATH', key: 'state.path', read: text },
  { name: 'TRUST_PROXY', key: 'server.trustProxy', format: 'a number of hops, or comma-separated addresses and CIDR ranges', read: (value) => (value ? hopsOrList(value) : undefined) },
]

/** The environment variables that only the environment sets; parseConfig and configPath read them. */
export const ENVIRONMENT_ONLY_VARIABLES: readonly EnvironmentOnlyVariable[] = [
  { name: 'GATEWAY_CONFIG', description: `Path of the configuration file; default ${DEFAULT_CONFIG_PATH}.` },
  {
    name: 'GATEWAY_SECRET',
    required: true,
    description: 'Comma-separated keys of at least 32 characters each: the first seals and signs, every key opens and verifies, so a rotation puts the new key first and drops the old one later.',
  },
  { name: 'UPSTREAM_CLIENT_SECRET', required: true, description: "The secret of the gateway's client at the upstream (upstream.clientId)." },
  { name: 'UPSTREAM_REGISTRATION_TOKEN', description: "RFC 7591 §3 initial access token for the upstream's registration endpoint, when registration.mode is upstream and the upstream wants one." },
  {
    name: 'REDIS_URL',
    description:
      'redis:// or rediss:// URL of the shared store, one node (it may carry a password). Set (or REDIS_SENTINELS, or REDIS_CLUSTER_NODES; exactly one of the three): replicas share state, rate-limit counters, grants, blocks and revocations through Redis (which then needs AOF persistence; docs/redis.md). None: short-lived state lives in memory, grants in the state file (state.path), and only one replica may run.',
  },
  { name: 'REDIS_SENTINELS', description: 'Comma-separated host:port of Redis Sentinels; with REDIS_SENTINEL_MASTER the gateway uses the master they name and follows its failovers.' },
  { name: 'REDIS_SENTINEL_MASTER', description: "The master's name in the sentinels' configuration; required with REDIS_SENTINELS." },
  { name: 'REDIS_SENTINEL_PASSWORD', description: "The sentinels' own password, when they have one." },
  { name: 'REDIS_CLUSTER_NODES', description: 'Comma-separated host:port seed nodes of a Redis Cluster; the other nodes are discovered.' },
  { name: 'REDIS_USERNAME', description: "The Redis data nodes' ACL user, in every mode." },
  { name: 'REDIS_PASSWORD', description: "The Redis data nodes' password, in every mode (with REDIS_URL: here or in the URL, not both)." },
  { name: 'REDIS_TLS', description: '1: TLS to every Redis node and sentinel, the certificate verified (a rediss:// URL is TLS already).' },
  { name: 'REDIS_CA_FILE', description: "PEM file of the CA that signed the Redis nodes' certificates; without it the system's CAs. A certificate that does not verify stops start-up." },
  { name: 'METRICS_TOKEN', description: 'When set, GET /metrics requires `Authorization: Bearer <token>`.' },
  {
    name: 'ADMIN_TOKEN',
    description: 'Switches the Admin API (/admin/*, `npm run admin`, docs/connections.md) on: every call must send `Authorization: Bearer <ADMIN_TOKEN>`. At least 32 characters of a bearer token (letters, digits, - . _ ~ + /), e.g. `openssl rand -base64 32`. Unset: every /admin path is 404.',
  },
]

/** Environment variables that override the file, mapped onto the file's shape. */
function environmentOverrides(env: NodeJS.ProcessEnv, file: Record<string, any>) {
  const merged = structuredClone(file)
  // A missing upstream section is reported key by key (upstream.issuer, upstream.clientId).
  merged.upstream ??= {}
  for (const variable of OVERRIDE_VARIABLES) {
    const raw = env[variable.name]
    const value = raw === undefined ? undefined : variable.read(raw)
    if (value !== undefined) setKey(merged, variable.key, value)
  }
  return merged
}

function setKey(target: Record<string, any>, key: string, value: unknown) {
  const parts = key.split('.')
  const last = parts.pop()!
  let node = target
  for (const part of parts) node = node[part] ??= {}
  node[last] = value
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
  const settings = parseSettings(file, env, where)
  const secrets = list(env.GATEWAY_SECRET ?? '')
  const problems: string[] = []
  if (secrets.length === 0) problems.push('  GATEWAY_SECRET: is required (comma-separated keys, first one signs)')
  else if (secrets.some((secret) => secret.length < 32)) {
    problems.push('  GATEWAY_SECRET: every key must be at least 32 characters')
  }
  const clientSecret = env.UPSTREAM_CLIENT_SECRET ?? ''
  if (!clientSecret) problems.push('  UPSTREAM_CLIENT_SECRET: is required (the gateway client secret at the upstream)')
  const redis = redisConnection(env)
  problems.push(...redis.problems.map((problem) => `  ${problem}`))
  const adminToken = env.ADMIN_TOKEN || undefined
  // The message names the rule, never the value.
  if (adminToken !== undefined) problems.push(...adminTokenProblems(adminToken))
  if (problems.length) throw new ConfigError(`invalid configuration (environment):\n${problems.join('\n')}`)

  const registrationToken = env.UPSTREAM_REGISTRATION_TOKEN || undefined
  const config = {
    ...settings,
    secrets,
    upstream: { ...settings.upstream, clientSecret, registrationToken },
    redis: settleRedis(settings.redis, redis.connection),
    metrics: { ...settings.metrics, token: env.METRICS_TOKEN || undefined },
    admin: { token: adminToken },
  }
  return deepFreeze(config)
}

/**
 * Validates a parsed config file plus the environment, without requiring or
 * reading any secret: for tools that check a deployment from the outside
 * (doctor/main.ts). parseConfig adds the secrets.
 */
export function parseSettings(file: unknown, env: NodeJS.ProcessEnv = {}, where = 'config'): Settings {
  if (file === null || typeof file !== 'object' || Array.isArray(file)) {
    throw new ConfigError(`invalid configuration (${where}): the file must hold a mapping of keys`)
  }
  const result = configSchema.safeParse(environmentOverrides(env, file))
  if (!result.success) throw new ConfigError(describeIssues(result.error, where))
  return deepFreeze(result.data)
}

/** Long enough not to be guessed, and sendable as a bearer token as it is (RFC 6750 §2.1 b64token). */
function adminTokenProblems(token: string): string[] {
  if (token.length < 32) return ['  ADMIN_TOKEN: must be at least 32 characters (e.g. openssl rand -base64 32); unset it to switch the Admin API off']
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) return ['  ADMIN_TOKEN: must be a bearer token: letters, digits and - . _ ~ + / only, = at the end (RFC 6750 §2.1)']
  return []
}

function isRedisUrl(value: string) {
  return URL.canParse(value) && ['redis:', 'rediss:'].includes(new URL(value).protocol)
}

/** The redis keys with their defaults that depend on the mode: a mode with replicas waits for one; one node has none to wait for. */
export function settleRedis(redis: Settings['redis'], connection: RedisConnection | undefined): Config['redis'] {
  return {
    ...redis,
    waitReplicas: redis.waitReplicas ?? (connection && connection.mode !== 'single' ? 1 : 0),
    waitTimeoutMs: redis.waitTimeoutMs ?? Math.floor(redis.commandTimeoutMs / 2),
    connection,
  }
}

const REDIS_MODES = ['REDIS_URL', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES'] as const

/** `host:port` or `[v6 address]:port`, port 1–65535. */
function parseNode(value: string): RedisNode | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(value)
  const port = Number(match?.[3])
  if (!match || port < 1 || port > 65_535) return undefined
  return { host: (match[1] ?? match[2])!, port }
}

function parseNodes(name: string, value: string, problems: string[]): RedisNode[] {
  const items = list(value)
  const nodes = items.map(parseNode)
  const bad = items.filter((_, index) => nodes[index] === undefined)
  if (items.length === 0) problems.push(`${name}: must list at least one host:port`)
  else if (bad.length) problems.push(`${name}: ${bad.map((item) => JSON.stringify(item)).join(', ')} ${bad.length === 1 ? 'is' : 'are'} not host:port`)
  return nodes.filter((node) => node !== undefined)
}

/**
 * How to reach Redis, from the environment: exactly one of REDIS_URL,
 * REDIS_SENTINELS (+ REDIS_SENTINEL_MASTER) and REDIS_CLUSTER_NODES, with the
 * passwords and TLS settings all modes share. No connection when none is set.
 * Messages name variables, never their values where those can carry a password.
 */
export function redisConnection(env: NodeJS.ProcessEnv): { connection?: RedisConnection | undefined; problems: string[] } {
  const problems: string[] = []
  const set = REDIS_MODES.filter((name) => env[name])
  if (set.length > 1) problems.push(`${set.join(', ')}: set only one of ${REDIS_MODES.join(', ')} (one node, Sentinel or Cluster)`)
  const tlsValue = (env.REDIS_TLS ?? '').trim().toLowerCase()
  if (!['', '0', '1', 'true', 'false'].includes(tlsValue)) problems.push('REDIS_TLS: must be 1 (TLS on) or 0 (off)')
  const url = env.REDIS_URL || undefined
  if (url !== undefined && !isRedisUrl(url)) problems.push('REDIS_URL: must be a redis:// or rediss:// URL')
  const tls = tlsValue === '1' || tlsValue === 'true' || (url !== undefined && isRedisUrl(url) && new URL(url).protocol === 'rediss:')
  const password = env.REDIS_PASSWORD || undefined
  if (url !== undefined && isRedisUrl(url) && new URL(url).password && password !== undefined) {
    problems.push('REDIS_URL, REDIS_PASSWORD: the URL carries a password already; set it in one place')
  }
  const masterName = env.REDIS_SENTINEL_MASTER || undefined
  if (env.REDIS_SENTINELS && masterName === undefined) problems.push('REDIS_SENTINEL_MASTER: is required with REDIS_SENTINELS (the master\'s name in the sentinels\' configuration)')
  if (!env.REDIS_SENTINELS && masterName !== undefined) problems.push('REDIS_SENTINEL_MASTER: is only read with REDIS_SENTINELS')
  if (!env.REDIS_SENTINELS && env.REDIS_SENTINEL_PASSWORD) problems.push('REDIS_SENTINEL_PASSWORD: is only read with REDIS_SENTINELS')
  let ca: string | undefined
  if (env.REDIS_CA_FILE) {
    if (!tls) problems.push('REDIS_CA_FILE: TLS is off; set REDIS_TLS=1 (or use a rediss:// URL)')
    try {
      ca = readFileSync(env.REDIS_CA_FILE, 'utf8')
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) problems.push(`REDIS_CA_FILE: ${env.REDIS_CA_FILE} holds no PEM certificate`)
    } catch (err) {
      problems.push(`REDIS_CA_FILE: cannot read ${env.REDIS_CA_FILE}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  const sentinels = env.REDIS_SENTINELS ? parseNodes('REDIS_SENTINELS', env.REDIS_SENTINELS, problems) : []
  const nodes = env.REDIS_CLUSTER_NODES ? parseNodes('REDIS_CLUSTER_NODES', env.REDIS_CLUSTER_NODES, problems) : []
  if (problems.length || set.length === 0) return { problems }
  const common = { username: env.REDIS_USERNAME || undefined, password, tls, ca }
  if (url !== undefined) return { connection: { mode: 'single', url, ...common }, problems }
  if (sentinels.length) return { connection: { mode: 'sentinel', sentinels, masterName: masterName!, sentinelPassword: env.REDIS_SENTINEL_PASSWORD || undefined, ...common }, problems }
  return { connection: { mode: 'cluster', nodes, ...common }, problems }
}

/** Where the configuration file is: GATEWAY_CONFIG, default config/gateway.yaml. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.GATEWAY_CONFIG ?? DEFAULT_CONFIG_PATH)
}

export function readConfigFile(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read the configuration file ${path}: ${(err as Error).message}`)
  }
}

/** Validates the file's text plus the environment; `path` only names the file in messages. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv, path: string): Config {
  return parseConfig(parseYamlFile(text, path), env, path)
}

function parseYamlFile(text: string, path: string): unknown {
  try {
    return parseYaml(text) ?? {}
  } catch (err) {
    throw new ConfigError(`the configuration file ${path} is not valid YAML: ${(err as Error).message}`)
  }
}

/** Reads GATEWAY_CONFIG (default config/gateway.yaml) and the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const path = configPath(env)
  return parseConfigText(readConfigFile(path), env, path)
}

/** Reads GATEWAY_CONFIG (default config/gateway.yaml) and the environment, without the secrets. */
export function loadSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const path = configPath(env)
  return parseSettings(parseYamlFile(readConfigFile(path), path), env, path)
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
