/**
 * Rate limits on registration, authorization and token (config `limits`):
 * per client address and per client id, each a fixed window counted in Redis
 * when the replicas share one (so the limit holds across them), in memory
 * otherwise. A route opts in with `config: { limits: 'token' }`; app.ts gives
 * it the check of those rules when the route is added. Excess requests get 429
 * `temporarily_unavailable` with Retry-After, through the one error handler
 * (JSON, or the page on /authorize).
 * When Redis cannot be asked, requests pass: the store's own 503 then speaks
 * for the outage, and an outage of the counter never locks every user out.
 * A limited request that carries X-Forwarded-For while no proxy is trusted
 * is logged once: behind a load balancer that nobody told the gateway
 * about, every client would share the balancer's counter.
 */
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { createHash } from 'node:crypto'
import type { Config, RateLimitRule } from '../config/schema.ts'
import { OAuthError } from '../errors.ts'

export type LimitedEndpoint = 'register' | 'authorize' | 'token'
export type LimitRule = 'perIp' | 'perClient'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Which rules of config `limits` apply to the route. */
    limits?: LimitedEndpoint
  }
}

/** One counter: whose requests it counts, its rule, and the check (undefined when the request names no such key). */
interface Counter {
  who: string
  /** Its key under limits.<endpoint>, for the metric. */
  rule: LimitRule
  limit: RateLimitRule
  /** Counts the request; the seconds to wait when it is one too many. */
  count(request: FastifyRequest): Promise<{ exceeded: boolean; retryAfter: number }>
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
 * when limits are off. `refused` hears of every 429 (the metric).
 */
export async function rateLimitChecks(
  app: FastifyInstance,
  config: Config,
  redis: Redis | undefined,
  refused: (endpoint: LimitedEndpoint, rule: LimitRule) => void = () => {},
): Promise<Partial<Record<LimitedEndpoint, LimitCheck>>> {
  const { limits } = config
  if (!limits.enabled) return {}
  await app.register(rateLimit, { global: false, skipOnError: true, nameSpace: 'rate-limit:', ...(redis ? { redis } : {}) })

  const counter = (name: string, who: string, rule: LimitRule, limit: RateLimitRule, keyOf: (request: FastifyRequest) => string | undefined): Counter[] => {
    if (limit.max === 0) return []
    const check = app.createRateLimit({ max: limit.max, timeWindow: limit.windowSeconds * 1000, keyGenerator: (request) => `${name}:${keyOf(request)}` })
    return [{
      who,
      rule,
      limit,
      async count(request) {
        if (keyOf(request) === undefined) return { exceeded: false, retryAfter: 0 }
        const result = await check(request)
        return result.isAllowed ? { exceeded: false, retryAfter: 0 } : { exceeded: result.isExceeded, retryAfter: result.ttlInSeconds }
      },
    }]
  }
  // Nothing to warn about when a proxy is trusted; otherwise once.
  let warnForwarded = config.server.trustProxy === 0
  const byAddress = (request: FastifyRequest) => {
    if (warnForwarded && request.headers['x-forwarded-for'] !== undefined) {
      warnForwarded = false
      request.log.warn(
        { peer: request.ip },
        'a request came with X-Forwarded-For but server.trustProxy is 0: if a load balancer or proxy is in front, rate limits count every client as its address; set TRUST_PROXY (or server.trustProxy) to the number of proxies in front',
      )
    }
    return request.ip
  }
  const byClient = (request: FastifyRequest) => {
    const clientId = claimedClientId(request)
    return clientId === undefined ? undefined : digest(clientId)
  }
  const counters: Record<LimitedEndpoint, Counter[]> = {
    register: counter('register:ip', 'this address', 'perIp', limits.register.perIp, byAddress),
    authorize: [
      ...counter('authorize:ip', 'this address', 'perIp', limits.authorize.perIp, byAddress),
      ...counter('authorize:client', 'this client', 'perClient', limits.authorize.perClient, byClient),
    ],
    token: [
      ...counter('token:ip', 'this address', 'perIp', limits.token.perIp, byAddress),
      ...counter('token:client', 'this client', 'perClient', limits.token.perClient, byClient),
    ],
  }

  const checkOf = (endpoint: LimitedEndpoint): LimitCheck => {
    const counted = counters[endpoint]
    return async (request) => {
      // Counted at once, so a stalled Redis costs one command timeout, not one per counter.
      const results = await Promise.all(counted.map((counter) => counter.count(request)))
      const index = results.findIndex((result) => result.exceeded)
      if (index < 0) return
      const { who, rule, limit } = counted[index]!
      refused(endpoint, rule)
      throw tooManyRequests(who, limit, results[index]!.retryAfter)
    }
  }
  return { register: checkOf('register'), authorize: checkOf('authorize'), token: checkOf('token') }
}

/** RFC 6585 §4, in the OAuth error shape. */
function tooManyRequests(who: string, limit: RateLimitRule, retryAfter: number): OAuthError {
  const seconds = Math.max(1, retryAfter)
  return new OAuthError(429, 'temporarily_unavailable', `too many requests from ${who}: at most ${limit.max} every ${limit.windowSeconds} s; retry after ${seconds} s`, {
    headers: { 'retry-after': String(seconds) },
    hint: `Too many sign-in attempts in a short time. Wait ${seconds} seconds, then start connecting again from the app.`,
  })
}
