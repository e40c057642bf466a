/**
 * Configuration, read once at start-up from the YAML file and the environment,
 * validated against schema.ts, then frozen. Secrets come only from the
 * environment.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { configSchema, type Config, type Settings } from './schema.ts'

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
  const redisUrl = env.REDIS_URL || undefined
  // The URL may carry a password: the message names the variable, never its value.
  if (redisUrl !== undefined && !isRedisUrl(redisUrl)) problems.push('  REDIS_URL: must be a redis:// or rediss:// URL')
  if (problems.length) throw new ConfigError(`invalid configuration (environment):\n${problems.join('\n')}`)

  const registrationToken = env.UPSTREAM_REGISTRATION_TOKEN || undefined
  const config = {
    ...settings,
    secrets,
    upstream: { ...settings.upstream, clientSecret, registrationToken },
    redis: { ...settings.redis, url: redisUrl },
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
