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
  if (env.GATEWAY_STATE_PATH) {
    merged.state ??= {}
    merged.state.path = env.GATEWAY_STATE_PATH
  }
  if (env.TRUST_PROXY) {
    merged.server ??= {}
    merged.server.trustProxy = /^\d+$/.test(env.TRUST_PROXY) ? Number(env.TRUST_PROXY) : list(env.TRUST_PROXY)
  }
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
  if (problems.length) throw new ConfigError(`invalid configuration (environment):\n${problems.join('\n')}`)

  const registrationToken = env.UPSTREAM_REGISTRATION_TOKEN || undefined
  const config = {
    ...settings,
    secrets,
    upstream: { ...settings.upstream, clientSecret, registrationToken },
    redis: settleRedis(settings.redis, redis.connection),
    metrics: { ...settings.metrics, token: env.METRICS_TOKEN || undefined },
  }
  return deepFreeze(config)
}

/**
 * Validates a parsed config file plus the environment, without requiring or
 * reading any secret: for tools that check a deployment from the outside
 * (doctor.ts). parseConfig adds the secrets.
 */
export function parseSettings(file: unknown, env: NodeJS.ProcessEnv = {}, where = 'config'): Settings {
  if (file === null || typeof file !== 'object' || Array.isArray(file)) {
    throw new ConfigError(`invalid configuration (${where}): the file must hold a mapping of keys`)
  }
  const result = configSchema.safeParse(environmentOverrides(env, file))
  if (!result.success) throw new ConfigError(describeIssues(result.error, where))
  return deepFreeze(result.data)
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
