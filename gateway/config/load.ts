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
    description: 'redis:// or rediss:// URL of the shared store (it may carry a password). Set: replicas share state and rate-limit counters through Redis. Unset: state lives in memory and only one replica may run.',
  },
  { name: 'METRICS_TOKEN', description: 'When set, GET /metrics requires `Authorization: Bearer <token>`.' },
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
