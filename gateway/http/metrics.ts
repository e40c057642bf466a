/**
 * Prometheus metrics, one registry per app: requests and latency per endpoint
 * and status, upstream calls and their failures, flows started and completed
 * and registrations per client preset, the in-memory store's fill, Redis
 * commands, their failures, reconnects and failovers, plus
 * Node's process metrics. Labels come from closed sets (route patterns,
 * preset names, upstream call names), never from what a client sends, so the
 * series stay few.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'

/** Latency buckets in seconds: sub-millisecond metadata up to the upstream timeout. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

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

  constructor(options: { processMetrics: boolean }) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'oauth_gateway_' })
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
