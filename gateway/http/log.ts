/**
 * What the gateway logs, and what it never does. Logs are JSON lines (pino,
 * through Fastify). Each request has an id (`reqId`): the caller's
 * X-Request-Id when it is a plain token, a new one otherwise, sent back in
 * X-Request-Id (but on the successes of quiet routes, which write no line at
 * info for it to name). One OAuth flow spans several requests (authorize,
 * consent, callback, token, refreshes); the id of the /authorize request that
 * started it travels sealed in state, code and refresh token, so every line
 * of the flow carries it as `flow`. Requests are logged by path only, no header is
 * logged, and known secret fields are redacted wherever a line puts them.
 */
import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { pino, type Bindings, type ChildLoggerOptions, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify'
import type { UpstreamRevocation } from '../grants/grant.ts'
import { exposeHeaders } from './cors.ts'

/** A request id the caller may choose: short, and nothing that could forge a log line. */
const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{8,64}$/

/** New ids: this process's random prefix, so that replicas' ids never meet, and a counter. */
const PROCESS_PREFIX = randomBytes(9).toString('base64url')
let requests = 0

export function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && CALLER_REQUEST_ID.test(given) ? given : `${PROCESS_PREFIX}-${(++requests).toString(36)}`
}

/** Sends the request id back, so the caller can quote it and ops find the lines; with CORS, a page may read it. */
export function identify(request: FastifyRequest, reply: FastifyReply, crossOrigin: boolean) {
  reply.header('x-request-id', request.id)
  if (crossOrigin) exposeHeaders(reply)
}

/**
 * Field names whose values are secrets, redacted at the top of a line and one
 * level down. (`code` is not among them: an error's `code` is an errno, and no
 * line carries an authorization code.)
 */
const SECRET_FIELDS: ReadonlySet<string> = new Set([
  'authorization', 'cookie', 'set-cookie', 'client_secret', 'client_assertion', 'code_verifier',
  'access_token', 'refresh_token', 'id_token', 'token', 'password', 'secret', 'clientSecret', 'registrationToken',
])
const CENSOR = '[redacted]'

/**
 * A log line's fields with every secret field, at the top and one level down,
 * replaced by `[redacted]`. Copies only what it changes: the caller's objects
 * are never touched. (pino's own `redact` does the same by path, but its
 * wildcard paths cost more than the rest of a request line together.)
 */
export function redactSecrets(fields: Record<string, unknown>): Record<string, unknown> {
  let redacted = fields
  for (const key of Object.keys(fields)) {
    const value = fields[key]
    const replacement = SECRET_FIELDS.has(key) ? CENSOR : isRecord(value) ? redactedCopy(value) : value
    if (replacement === value) continue
    if (redacted === fields) redacted = { ...fields }
    redacted[key] = replacement
  }
  return redacted
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function redactedCopy(value: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined
  for (const key of Object.keys(value)) {
    if (!SECRET_FIELDS.has(key)) continue
    // An error keeps what the log shows of it (its own message and stack are not enumerable).
    copy ??= value instanceof Error ? { ...value, type: value.name, message: value.message, stack: value.stack } : { ...value }
    copy[key] = CENSOR
  }
  return copy ?? value
}

/**
 * One line per request, written when it is answered, with its method and
 * path (Fastify writes two). Routes marked `config: { log: 'quiet' }` (the
 * discovery documents, probes and /metrics, fetched over and over and counted
 * in /metrics anyway) write theirs at debug unless the answer is an error.
 */
export class RequestLog extends LogController {
  override incomingRequest() {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply) {
    const line = { req: request, res: reply, responseTime: reply.elapsedTime }
    if (error) reply.log.error({ ...line, err: error }, 'request errored')
    else if (reply.statusCode < 400 && request.route?.quiet) reply.log.debug(line, 'request completed')
    else reply.log.info(line, 'request completed')
  }
}

type LevelName = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace'

/**
 * A logger that makes its pino child (bound to the request id) only when a
 * line is written at an enabled level: most requests (discovery documents,
 * probes) write none, and a child per request costs a good part of answering
 * them. Its own children are lazy too. The gateway's logger is one
 * (gatewayLogger), so Fastify's child per request is one, made by Fastify's
 * default factory: a factory of our own would be checked by Fastify, method
 * by method, on every request.
 */
export class RequestLogger implements FastifyBaseLogger {
  readonly #parent: Logger
  readonly #bindings: Bindings
  readonly #options: ChildLoggerOptions
  #child: Logger | undefined

  constructor(parent: Logger, bindings: Bindings, options: ChildLoggerOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #logger(): Logger {
    return (this.#child ??= this.#parent.child(this.#bindings, this.#options))
  }

  #write(level: LevelName, args: unknown[]) {
    // Without a child yet, the parent judges the level, unless the request has one of its own (a route's logLevel).
    if (this.#child === undefined && this.#options.level === undefined && !this.#parent.isLevelEnabled(level)) return
    ;(this.#logger()[level] as (...args: unknown[]) => void)(...args)
  }

  get level(): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level
  }

  set level(level: string) {
    this.#logger().level = level
  }

  isLevelEnabled(level: string): boolean {
    return (this.#child ?? (this.#options.level === undefined ? this.#parent : this.#logger())).isLevelEnabled(level)
  }

  fatal(...args: unknown[]) { this.#write('fatal', args) }
  error(...args: unknown[]) { this.#write('error', args) }
  warn(...args: unknown[]) { this.#write('warn', args) }
  info(...args: unknown[]) { this.#write('info', args) }
  debug(...args: unknown[]) { this.#write('debug', args) }
  trace(...args: unknown[]) { this.#write('trace', args) }
  silent() {}

  child(bindings: Bindings, options: ChildLoggerOptions = {}): RequestLogger {
    return new RequestLogger(this.#logger(), bindings, options)
  }
}

export type GatewayLoggerOptions = LoggerOptions & { stream?: DestinationStream }

/**
 * The logger given to Fastify (`loggerInstance`): pino, writing to `stream`
 * (stdout when absent), with lazy children. Its serializers are named for
 * Fastify, which adds its own to the child it logs with; the gateway's come
 * last, so a request is logged by its path only.
 */
export function gatewayLogger({ stream, ...options }: GatewayLoggerOptions): FastifyBaseLogger {
  return Object.assign(new RequestLogger(pino(options, stream), {}, {}), { serializers: options.serializers })
}

/** Logger settings for production: one line per request (app.ts) and per OAuth step, secrets redacted. */
export const LOGGER_OPTIONS = {
  level: 'info',
  formatters: { log: redactSecrets },
  serializers: {
    req: (request: { method: string; url: string }) => ({ method: request.method, path: request.url.split('?')[0] }),
  },
} as const

declare module 'fastify' {
  interface FastifyContextConfig {
    /** 'quiet': a successful answer's request line is logged at debug (RequestLog). */
    log?: 'quiet'
  }
  interface FastifyRequest {
    /** The OAuth flow this request belongs to, once known: the request id of its /authorize. */
    flow: string | null
  }
}

/**
 * The one line an OAuth step writes when it succeeds: the step, its outcome,
 * the client and the flow. Failures get theirs from the error handler.
 */
export function logStep(request: FastifyRequest, step: string, outcome: string, message: string, details: Record<string, unknown> = {}) {
  request.log.info({ step, outcome, client: request.oauthClient ?? undefined, flow: request.flow ?? undefined, ...details }, message)
}

/** Who did what in an audit line: ops through the Admin API, or a user ending their own connection. */
export interface AuditEntry {
  actor: 'admin' | 'user'
  /** What was done, e.g. `grants.revoke`, `blocks.create`. */
  action: string
  /** The user who acted (actor `user`), by the upstream's identifier. */
  user?: string | undefined
  /** The grants it ended or touched, and how many. */
  grant_ids?: readonly string[] | undefined
  count?: number | undefined
  [detail: string]: unknown
}

/** The most grant ids one audit line names; beyond, `grant_ids_truncated` says so and `count` has them all. */
export const AUDIT_MAX_GRANT_IDS = 1000

/**
 * Collects what a bulk end did, for its audit line and its answer: the ids of
 * the grants it ended (up to AUDIT_MAX_GRANT_IDS) and how their upstream
 * refresh tokens fared.
 */
export function endedGrants() {
  const ids: string[] = []
  let truncated = false
  let ended = 0
  let unsupported = 0
  let failed = 0
  return {
    add: (grantId: string, upstreamRevocation: UpstreamRevocation) => {
      ended++
      if (upstreamRevocation === 'unsupported') unsupported++
      if (upstreamRevocation === 'failed') failed++
      if (ids.length < AUDIT_MAX_GRANT_IDS) ids.push(grantId)
      else truncated = true
    },
    /** The audit line's part: which grants. */
    get entry() {
      return { grant_ids: ids, ...(truncated ? { grant_ids_truncated: true } : {}) }
    },
    /**
     * The answer's part, when not every upstream refresh token was revoked:
     * `unsupported` (the upstream has no revocation endpoint), or `failed`
     * with how many (the upstream refused or was unreachable; each is logged).
     */
    get upstream() {
      if (failed) return { upstream_revocation: 'failed', upstream_revocation_failed: failed }
      if (ended && unsupported === ended) return { upstream_revocation: 'unsupported' }
      return {}
    },
  }
}

/**
 * One audit line per admin action and per user disconnect: `audit: true`,
 * who, what, which grants and when (`at`, ISO 8601, beside pino's `time`).
 * Never a token: what it names are ids, and the line goes through the same
 * redaction as every other.
 */
export function audit(log: Pick<FastifyBaseLogger, 'info'>, entry: AuditEntry) {
  log.info({ audit: true, at: new Date().toISOString(), ...entry }, `audit: ${entry.actor} ${entry.action}`)
}
