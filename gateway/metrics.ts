/**
 * Prometheus metrics, one registry per app: requests and latency per endpoint
 * and status, upstream calls and their failures, flows started and completed
 * and registrations per client preset, plus Node's process metrics. Labels
 * come from closed sets (route patterns, preset names, upstream call names),
 * never from what a client sends, so the series stay few.
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'

/** Latency buckets in seconds: sub-millisecond metadata up to the upstream timeout. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export class Metrics {
  readonly registry = new Registry()
  readonly contentType = this.registry.contentType

  private readonly requests = new Counter({
    name: 'oauth_gateway_http_requests_total',
    help: 'HTTP requests answered, per endpoint, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  })

  private readonly requestSeconds = new Histogram({
    name: 'oauth_gateway_http_request_duration_seconds',
    help: 'Time to answer an HTTP request, per endpoint, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  })

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

  constructor(options: { processMetrics: boolean }) {
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'oauth_gateway_' })
  }

  /** The series of each route, method and status, found once: labelling on every request costs more than counting. */
  readonly #requestSeries = new Map<string, { count: Counter.Internal; seconds: Histogram.Internal<'route' | 'method' | 'status'> }>()

  request(route: string, method: string, status: number, seconds: number) {
    const key = `${route} ${method} ${status}`
    let series = this.#requestSeries.get(key)
    if (!series) {
      const labels = { route, method, status: String(status) }
      series = { count: this.requests.labels(labels), seconds: this.requestSeconds.labels(labels) }
      this.#requestSeries.set(key, series)
    }
    series.count.inc()
    series.seconds.observe(seconds)
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

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
