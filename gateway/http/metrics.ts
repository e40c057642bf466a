/**
 * Prometheus metrics, one registry per app: requests and latency per endpoint
 * and status, upstream calls and their failures, flows started and completed
 * and registrations per client preset, redirect URIs refused per preset, rate
 * limit refusals, client metadata document fetches, the readiness checks, the
 * in-memory store's fill, Redis commands, their failures, reconnects and
 * failovers, grants and blocks, Admin API calls, plus Node's process metrics.
 * deploy/prometheus/ and deploy/grafana/ read these names, and test/deploy/
 * proves they still exist. Labels come from closed sets (route patterns,
 * preset names, upstream call names), never from what a client sends, so the
 * series stay few.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import { PRESET_NAMES } from '../policy/presets.ts'
import { END_REASONS, type EndReason } from '../grants/grant.ts'
import type { LimitRule } from './rate-limits.ts'

/** Latency buckets in seconds: sub-millisecond metadata up to the upstream timeout. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * The error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009
 * §2.2.1, RFC 7591 §3.2.2, RFC 8707 §2 and OpenID Connect Core §3.1.2.6:
 * the label's closed set, since an upstream's code is passed on as it is.
 */
const OAUTH_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'access_denied', 'unsupported_response_type', 'server_error', 'temporarily_unavailable',
  'invalid_token', 'insufficient_scope', 'unsupported_token_type', 'invalid_redirect_uri', 'invalid_client_metadata', 'invalid_target',
  'interaction_required', 'login_required', 'account_selection_required', 'consent_required',
])

/** What /readyz checks (routes/health.ts): each true when it passes. */
export interface Readiness {
  upstream_metadata: boolean
  store: boolean
}

export class Metrics {
  readonly registry = new Registry()
  readonly contentType = this.registry.contentType

  private readonly upstreamSeconds = new Histogram({
    name: 'oauth_gateway_upstream_request_duration_seconds',
    help: 'Time of each call to the upstream OAuth server, per call and outcome (ok, refused, failed)',
    labelNames: ['call', 'outcome'] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  })

  private readonly upstreamErrors = new Counter({
    name: 'oauth_gateway_upstream_errors_total',
    help: 'Upstream calls that failed or were refused, per call and the error the client got',
    labelNames: ['call', 'error'] as const,
    registers: [this.registry],
  })

  private readonly flowsStarted = new Counter({
    name: 'oauth_gateway_flows_started_total',
    help: 'Authorization requests accepted (the browser goes to consent or to the upstream), per client preset',
    labelNames: ['preset'] as const,
    registers: [this.registry],
  })

  private readonly flowsCompleted = new Counter({
    name: 'oauth_gateway_flows_completed_total',
    help: 'Authorization codes exchanged for tokens, per client preset',
    labelNames: ['preset'] as const,
    registers: [this.registry],
  })

  private readonly registrations = new Counter({
    name: 'oauth_gateway_registrations_total',
    help: 'Clients registered (RFC 7591), per client preset of their first redirect URI',
    labelNames: ['preset'] as const,
    registers: [this.registry],
  })

  private readonly redisSeconds = new Histogram({
    name: 'oauth_gateway_redis_command_duration_seconds',
    help: 'Time of each store command sent to Redis (a durable write includes its WAIT), per command and outcome (ok, failed)',
    labelNames: ['command', 'outcome'] as const,
    buckets: [0.0005, ...BUCKETS.slice(0, 11)],
    registers: [this.registry],
  })

  private readonly redisErrors = new Counter({
    name: 'oauth_gateway_redis_errors_total',
    help: 'Store commands that failed, per kind: unavailable, timeout, readonly, cluster, replication (too few replicas acknowledged), other',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  })

  private readonly redisReconnects = new Counter({
    name: 'oauth_gateway_redis_reconnects_total',
    help: 'Times the connection to Redis was back after it was lost',
    registers: [this.registry],
  })

  private readonly redisFailovers = new Counter({
    name: 'oauth_gateway_redis_failovers_total',
    help: 'Times another Redis node became master (Sentinel promoted a replica, or a cluster slot moved to a new master)',
    registers: [this.registry],
  })

  private readonly errorAnswers = new Counter({
    name: 'oauth_gateway_errors_total',
    help: 'Error answers, per endpoint (route pattern, unmatched for unknown paths) and OAuth error code (other: a code outside the RFCs, as an upstream may send)',
    labelNames: ['endpoint', 'error'] as const,
    registers: [this.registry],
  })

  private readonly redirectUriRefusals = new Counter({
    name: 'oauth_gateway_redirect_uri_refusals_total',
    help: 'Redirect URIs refused because the allowlist (redirectPresets, allowedRedirectUris) does not allow them, per endpoint and the client preset the URI belongs to (other: none)',
    labelNames: ['endpoint', 'preset'] as const,
    registers: [this.registry],
  })

  private readonly rateLimitRefusals = new Counter({
    name: 'oauth_gateway_rate_limit_refusals_total',
    help: 'Requests answered 429 by a rate limit, per endpoint (limits.<endpoint>) and limit (perIp, perTrustedIp, perClient, perFamily, global)',
    labelNames: ['endpoint', 'limit'] as const,
    registers: [this.registry],
  })

  private readonly documentFetches = new Counter({
    name: 'oauth_gateway_client_metadata_fetches_total',
    help: 'Fetches of client metadata documents and the key sets they name (cache hits not counted), per document (metadata, jwks) and outcome (ok, failed: unreachable, refused or too large; invalid: fetched but unusable)',
    labelNames: ['document', 'outcome'] as const,
    registers: [this.registry],
  })

  private readonly adminRequests = new Counter({
    name: 'oauth_gateway_admin_requests_total',
    help: 'Admin API calls, per action (clients.list, grants.revoke, blocks.create, …) and outcome (ok, unauthorized, refused, failed)',
    labelNames: ['action', 'outcome'] as const,
    registers: [this.registry],
  })

  private readonly grantsCreated = new Counter({
    name: 'oauth_gateway_grants_created_total',
    help: 'Grants created: code exchanges that gave a refresh token, and refresh tokens from before grants taken over',
    registers: [this.registry],
  })

  private readonly grantsEnded = new Counter({
    name: 'oauth_gateway_grants_ended_total',
    help: 'Grants ended, per reason (revoked_by_user, revoked_by_admin, block, expired; upgrade: a refresh token from before grants replaced by a grant)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })

  constructor(options: { processMetrics: boolean }) {
    // The per-preset series exist from the start at 0, so that rate() sees a replica's first flows
    // (a counter that appears already at 1 shows no increase) and the sign-in ratios have a denominator.
    for (const preset of [...PRESET_NAMES, 'other']) {
      for (const counter of [this.flowsStarted, this.flowsCompleted, this.registrations]) counter.inc({ preset }, 0)
    }
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'oauth_gateway_' })
    // Every reason from the start, at 0, so a rate() over it has a series before the first end.
    for (const reason of END_REASONS) this.grantsEnded.inc({ reason }, 0)
  }

  grantCreated() {
    this.grantsCreated.inc()
  }

  grantEnded(reason: EndReason, count = 1) {
    this.grantsEnded.inc({ reason }, count)
  }

  /** Live grants and blocks, read at each scrape (from storage: every replica reports the same figures). */
  watchGrants(source: { countGrants(): Promise<number>; readonly blockCount: number }) {
    new Gauge({
      name: 'oauth_gateway_grants_active',
      help: 'Grants that live (connections that may refresh), in the state file or Redis; the same on every replica',
      registers: [this.registry],
      async collect() {
        // Storage away (Redis down): the gauge keeps its last value, and the scrape still answers with
        // the readiness and Redis series that tell why, instead of failing whole.
        await source.countGrants().then((count) => this.set(count), () => {})
      },
    })
    new Gauge({
      name: 'oauth_gateway_blocks',
      help: 'Blocks in force (client ids, redirect hosts, client name patterns)',
      registers: [this.registry],
      collect() {
        this.set(source.blockCount)
      },
    })
  }

  readonly #requests = new RequestSeries()

  request(route: string, method: string, status: number, seconds: number) {
    this.#requests.observe(route, method, status, seconds)
  }

  upstreamCall(call: string, seconds: number, failure?: { status: number; error: string }) {
    const outcome = failure === undefined ? 'ok' : failure.status >= 500 ? 'failed' : 'refused'
    this.upstreamSeconds.observe({ call, outcome }, seconds)
    if (failure) this.upstreamErrors.inc({ call, error: failure.error })
  }

  flowStarted(preset: string) {
    this.flowsStarted.inc({ preset })
  }

  flowCompleted(preset: string) {
    this.flowsCompleted.inc({ preset })
  }

  clientRegistered(preset: string) {
    this.registrations.inc({ preset })
  }

  /** For RedisStore: each command's time, and the kind of its failure. */
  readonly redisCommand = (command: string, seconds: number, failure?: string) => {
    this.redisSeconds.observe({ command, outcome: failure === undefined ? 'ok' : 'failed' }, seconds)
    if (failure !== undefined) this.redisErrors.inc({ kind: failure })
  }

  /** For connectRedis: reconnects and failovers seen. */
  redisConnection() {
    return { reconnected: () => this.redisReconnects.inc(), failedOver: () => this.redisFailovers.inc() }
  }

  /** Every error answer, from the one error handler (JSON, page or redirect alike). */
  errorAnswered(endpoint: string, error: string) {
    this.errorAnswers.inc({ endpoint, error: OAUTH_ERRORS.has(error) ? error : 'other' })
  }

  redirectUriRefused(endpoint: 'register' | 'authorize', preset: string) {
    this.redirectUriRefusals.inc({ endpoint, preset })
  }

  rateLimited(endpoint: string, limit: LimitRule) {
    this.rateLimitRefusals.inc({ endpoint, limit })
  }

  documentFetched(document: 'metadata' | 'jwks', outcome: 'ok' | 'failed' | 'invalid') {
    this.documentFetches.inc({ document, outcome })
  }

  /**
   * The checks /readyz runs, evaluated at each scrape: 1 when one passes, 0
   * when it fails. A replica whose store does not answer still answers the
   * scrape, so the alert can name the store rather than a missing target.
   */
  watchReadiness(storeKind: string, checks: () => Promise<Readiness>) {
    new Gauge({
      name: 'oauth_gateway_ready',
      help: 'Readiness checks of /readyz at scrape time, per check (upstream_metadata: the upstream metadata is loaded; store: the state store answers and takes writes), with the store in use (redis, memory): 1 passes, 0 fails',
      labelNames: ['check', 'store'] as const,
      registers: [this.registry],
      async collect() {
        const results = await checks()
        for (const [check, passed] of Object.entries(results)) this.set({ check, store: storeKind }, passed ? 1 : 0)
      },
    })
  }

  /** An Admin API call: `action` from the route (a closed set), `outcome` from the status. */
  adminRequest(action: string, status: number) {
    const outcome = status < 400 ? 'ok' : status === 401 ? 'unauthorized' : status < 500 ? 'refused' : 'failed'
    this.adminRequests.inc({ action, outcome })
  }

  /** The in-memory store's fill, read at each scrape: it refuses new entries with 503 when full. */
  watchMemoryStore(store: { readonly size: number; readonly maxEntries: number }) {
    new Gauge({
      name: 'oauth_gateway_memory_store_entries',
      help: 'Entries held by the in-memory store (no Redis), expired ones not yet swept included; at its bound new entries get 503',
      registers: [this.registry],
      collect() {
        this.set(store.size)
      },
    })
    const bound = new Gauge({ name: 'oauth_gateway_memory_store_max_entries', help: 'The in-memory store\'s bound (memoryStore.maxEntries)', registers: [this.registry] })
    bound.set(store.maxEntries)
  }

  async text(): Promise<string> {
    return (await this.registry.metrics()) + this.#requests.text()
  }
}

/**
 * Requests answered and their latency, per route, method and status: the
 * counter and histogram every request updates, kept here rather than in
 * prom-client, whose labelled histograms hash their labels on every
 * observation (a cost the size of the metadata endpoint's whole answer).
 * Written in the same text format, after the registry's metrics.
 */
class RequestSeries {
  /** route → method → status → figures; the route and method strings come from Fastify and repeat. */
  readonly #routes = new Map<string, Map<string, Map<number, Figures>>>()

  observe(route: string, method: string, status: number, seconds: number) {
    let methods = this.#routes.get(route)
    if (!methods) this.#routes.set(route, (methods = new Map()))
    let statuses = methods.get(method)
    if (!statuses) methods.set(method, (statuses = new Map()))
    let figures = statuses.get(status)
    if (!figures) statuses.set(status, (figures = { count: 0, sum: 0, buckets: new Float64Array(BUCKETS.length) }))
    figures.count++
    figures.sum += seconds
    for (let bucket = 0; bucket < BUCKETS.length; bucket++) {
      if (seconds <= BUCKETS[bucket]!) {
        figures.buckets[bucket]!++
        break
      }
    }
  }

  text(): string {
    const counts: string[] = []
    const histogram: string[] = []
    for (const [route, methods] of this.#routes) {
      for (const [method, statuses] of methods) {
        for (const [status, figures] of statuses) {
          const labels = `route="${escapeLabel(route)}",method="${escapeLabel(method)}",status="${status}"`
          counts.push(`${REQUESTS}{${labels}} ${figures.count}`)
          let cumulative = 0
          BUCKETS.forEach((bound, index) => {
            cumulative += figures.buckets[index]!
            histogram.push(`${DURATION}_bucket{le="${bound}",${labels}} ${cumulative}`)
          })
          histogram.push(`${DURATION}_bucket{le="+Inf",${labels}} ${figures.count}`, `${DURATION}_sum{${labels}} ${figures.sum}`, `${DURATION}_count{${labels}} ${figures.count}`)
        }
      }
    }
    return [
      `# HELP ${REQUESTS} HTTP requests answered, per endpoint, method and status`,
      `# TYPE ${REQUESTS} counter`,
      ...counts,
      `# HELP ${DURATION} Time to answer an HTTP request, per endpoint, method and status`,
      `# TYPE ${DURATION} histogram`,
      ...histogram,
      '',
    ].join('\n')
  }
}

interface Figures {
  count: number
  sum: number
  /** Observations per bucket of BUCKETS (not cumulative); those above the last are counted only in `count`. */
  buckets: Float64Array
}

const REQUESTS = 'oauth_gateway_http_requests_total'
const DURATION = 'oauth_gateway_http_request_duration_seconds'

/** Prometheus text format: a label value escapes backslash, double quote and line feed. */
function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (character) => (character === '\n' ? '\\n' : `\\${character}`))
}
