/**
 * Rate limits on registration, authorization and token (config `limits`):
 * per client address, per client id, per client family (the redirect URI
 * preset) and one global ceiling, each a fixed window counted in Redis
 * when the replicas share one (so the limit holds across them), in memory
 * otherwise. They are counted from the narrowest to the broadest, and a
 * request refused by one is not counted by the broader ones: an address
 * over its own limit cannot use up the limit its family or everyone shares. A route opts in with `config: { limits: 'token' }`; app.ts gives
 * it the check of those rules when the route is added. Excess requests get 429
 * `temporarily_unavailable` with Retry-After, naming the limit that stopped
 * them, through the one error handler (JSON, or the page on /authorize).
 * Hosted clients (ChatGPT, Claude) register and redeem codes from a few
 * egress addresses for all their users: ops name those ranges in
 * `limits.trustedRanges`, whose addresses count against `perTrustedIp`.
 * A metadata document's client id speaks for every user of its vendor, so it
 * has no per-client limit; its family and the global ceiling count it.
 * When Redis cannot be asked, requests pass: the store's own 503 then speaks
 * for the outage, and an outage of the counter never locks every user out.
 * A limited request that carries X-Forwarded-For while no proxy is trusted
 * is logged once: behind a load balancer that nobody told the gateway
 * about, every client would share the balancer's counter.
 */
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import type { RedisClient } from '../state/redis-connection.ts'
import { createHash } from 'node:crypto'
import type { Config, RateLimitRule } from '../config/schema.ts'
import type { ClientRegistry } from '../clients/registry.ts'
import { isClientIdUrl } from '../clients/metadata-documents.ts'
import { OAuthError } from '../errors.ts'
import { AddressRanges } from '../policy/addresses.ts'
import { presetOf } from '../policy/presets.ts'

export type LimitedEndpoint = 'register' | 'authorize' | 'token'
/** A rule's key under limits.<endpoint>. */
export type LimitRule = 'perIp' | 'perTrustedIp' | 'perClient' | 'perFamily' | 'global'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which rules of config `limits` apply to the route. */
    limits?: LimitedEndpoint
  }
}

/** One counter: whose requests it counts, its rule, and the check (undefined when the request names no such key). */
interface Counter {
  /** Completes "too many requests from …" for a request's key. */
  who: (key: string) => string
  /** Its key under limits.<endpoint>, for the metric; `limits.<endpoint>.<rule>` is named in the refusal. */
  rule: LimitRule
  limit: RateLimitRule
  /** Counts the request; the seconds to wait when it is one too many; `unavailable` when the counter could not be asked. */
  count(request: FastifyRequest): Promise<{ exceeded: boolean; retryAfter: number; key?: string; unavailable?: true }>
}

/** The client id a request names: Basic credentials, a form's or a query's client_id. */
export function claimedClientId(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization
  if (authorization?.startsWith('Basic ')) {
    const decoded = Buffer.from(authorization.slice(6), 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon > 0) return decoded.slice(0, colon)
  }
  for (const source of [request.body, request.query]) {
    const value = (source as Record<string, unknown> | undefined)?.client_id
    if (typeof value === 'string' && value) return value
  }
  return undefined
}

/** Client ids can be long (sealed ids, metadata document URLs): the counter's key holds a digest. */
const digest = (value: string) => createHash('sha256').update(value).digest('base64url').slice(0, 22)

/** Runs an endpoint's counters for a request; throws the 429 when one is exceeded. */
export type LimitCheck = (request: FastifyRequest) => Promise<void>

/**
 * Registers the rate limiter and returns each limited endpoint's check; none
 * when limits are off. `clients` tells a registered client's redirect URIs,
 * for its family; `refused` hears of every 429 (the metric).
 */
export async function rateLimitChecks(
  app: FastifyInstance,
  config: Config,
  redis: RedisClient | undefined,
  clients: Pick<ClientRegistry, 'registeredRedirectUris'>,
  refused: (endpoint: LimitedEndpoint, rule: LimitRule) => void = () => {},
): Promise<Partial<Record<LimitedEndpoint, LimitCheck>>> {
  const { limits } = config
  if (!limits.enabled) return {}
  // Each counter is one key and its script touches only that key, so it runs on one node of a cluster too;
  // the plugin types its client as a single node, which a Cluster stands in for.
  // Errors reach count(), which lets the request pass and stops the broader counters (see checkOf).
  await app.register(rateLimit, { global: false, skipOnError: false, nameSpace: 'rate-limit:', ...(redis ? { redis: redis as Redis } : {}) })

  const counter = (endpoint: LimitedEndpoint, rule: LimitRule, who: Counter['who'], keyOf: (request: FastifyRequest) => string | undefined): Counter[] => {
    const limit = (limits[endpoint] as Partial<Record<LimitRule, RateLimitRule>>)[rule]!
    const path = `limits.${endpoint}.${rule}`
    if (limit.max === 0) return []
    const check = app.createRateLimit({ max: limit.max, timeWindow: limit.windowSeconds * 1000, keyGenerator: (request) => `${path}:${keyOf(request)}` })
    return [{
      who,
      rule,
      limit,
      async count(request) {
        const key = keyOf(request)
        if (key === undefined) return { exceeded: false, retryAfter: 0 }
        const result = await check(request).catch(() => undefined)
        if (result === undefined) return { exceeded: false, retryAfter: 0, unavailable: true }
        return result.isAllowed ? { exceeded: false, retryAfter: 0 } : { exceeded: result.isExceeded, retryAfter: result.ttlInSeconds, key }
      },
    }]
  }
  // Nothing to warn about when a proxy is trusted; otherwise once.
  let warnForwarded = config.server.trustProxy === 0
  const addressOf = (request: FastifyRequest) => {
    if (warnForwarded && request.headers['x-forwarded-for'] !== undefined) {
      warnForwarded = false
      request.log.warn(
        { peer: request.ip },
        'a request came with X-Forwarded-For but server.trustProxy is 0: if a load balancer or proxy is in front, rate limits count every client as its address; set TRUST_PROXY (or server.trustProxy) to the number of proxies in front',
      )
    }
    return request.ip
  }
  const trusted = new AddressRanges(limits.trustedRanges)
  const byAddress = (request: FastifyRequest) => addressOf(request)
  // A hosted client's egress address speaks for many users: inside limits.trustedRanges it has a limit of its own.
  const byUntrustedAddress = (request: FastifyRequest) => (trusted.has(request.ip) ? undefined : addressOf(request))
  const byTrustedAddress = (request: FastifyRequest) => (trusted.has(request.ip) ? request.ip : undefined)
  const byRegisteredClient = (request: FastifyRequest) => {
    const clientId = claimedClientId(request)
    return clientId === undefined || isClientIdUrl(clientId) ? undefined : digest(clientId)
  }
  // The family of the redirect URI a registration names first, or of the client a token request names.
  const byRegisteredFamily = (request: FastifyRequest) => {
    const uris = (request.body as { redirect_uris?: unknown } | undefined)?.redirect_uris
    return presetOf(Array.isArray(uris) && typeof uris[0] === 'string' ? uris[0] : '')
  }
  const byClientFamily = (request: FastifyRequest) => {
    const clientId = claimedClientId(request)
    return clientId === undefined ? undefined : presetOf(clients.registeredRedirectUris(clientId)?.[0] ?? '', clientId)
  }
  const everyone = () => 'all'
  const ADDRESS = () => 'this address'
  const TRUSTED = () => 'this trusted address'
  const CLIENT = () => 'this client'
  const FAMILY = (family: string) => `clients of the ${family} family`
  const ALL = () => 'all clients together'
  // Each endpoint's counters in stages, narrowest first: the address and the client, then the family, then everyone.
  const stages: Record<LimitedEndpoint, Counter[][]> = {
    register: [
      [...counter('register', 'perIp', ADDRESS, byUntrustedAddress), ...counter('register', 'perTrustedIp', TRUSTED, byTrustedAddress)],
      counter('register', 'perFamily', FAMILY, byRegisteredFamily),
      counter('register', 'global', ALL, everyone),
    ],
    authorize: [[...counter('authorize', 'perIp', ADDRESS, byAddress), ...counter('authorize', 'perClient', CLIENT, byRegisteredClient)]],
    token: [
      [
        ...counter('token', 'perIp', ADDRESS, byUntrustedAddress),
        ...counter('token', 'perTrustedIp', TRUSTED, byTrustedAddress),
        ...counter('token', 'perClient', CLIENT, byRegisteredClient),
      ],
      counter('token', 'perFamily', FAMILY, byClientFamily),
      counter('token', 'global', ALL, everyone),
    ],
  }

  const checkOf = (endpoint: LimitedEndpoint): LimitCheck => {
    const counted = stages[endpoint].filter((stage) => stage.length > 0)
    return async (request) => {
      for (const stage of counted) {
        // A stage is counted at once; a refusal stops before the broader stages count the request,
        // and so does a counter that cannot be asked, so a stalled Redis costs one command timeout.
        const results = await Promise.all(stage.map((counter) => counter.count(request)))
        const index = results.findIndex((result) => result.exceeded)
        if (index >= 0) {
          const { who, rule, limit } = stage[index]!
          refused(endpoint, rule)
          throw tooManyRequests(who(results[index]!.key ?? ''), `limits.${endpoint}.${rule}`, limit, results[index]!.retryAfter)
        }
        if (results.some((result) => result.unavailable)) return
      }
    }
  }
  return { register: checkOf('register'), authorize: checkOf('authorize'), token: checkOf('token') }
}

/** RFC 6585 §4, in the OAuth error shape. */
function tooManyRequests(who: string, path: string, limit: RateLimitRule, retryAfter: number): OAuthError {
  const seconds = Math.max(1, retryAfter)
  return new OAuthError(429, 'temporarily_unavailable', `too many requests from ${who} (${path}): at most ${limit.max} every ${limit.windowSeconds} s; retry after ${seconds} s`, {
    details: { limit: path },
    headers: { 'retry-after': String(seconds) },
    hint: `Too many sign-in attempts in a short time. Wait ${seconds} seconds, then start connecting again from the app.`,
  })
}
