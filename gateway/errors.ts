/**
 * OAuth errors and the one place where any error becomes a response:
 * JSON in the RFC 6749 §5.2 shape on back-channel endpoints, a redirect to the
 * client once /authorize has validated its redirect URI (RFC 6749 §4.1.2.1),
 * and an HTML page on browser endpoints before that.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { allowCrossOrigin } from './http/cors.ts'
import { identify } from './http/log.ts'
import { PAGE_HEADERS, redirectBrowser, renderErrorPage } from './http/pages.ts'
import { StoreUnavailable } from './state/store.ts'

/** What the log line of a failure adds to the error itself: never sent to the client, and never a secret, code or token. */
export type LogDetails = Readonly<Record<string, unknown>>

/**
 * An error whose description is written for the client: it names the
 * parameter (or the upstream's answer) and the rule. Anything else is
 * answered with a fixed `server_error`.
 */
export class OAuthError extends Error {
  readonly status: number
  readonly error: string
  readonly headers: Record<string, string>
  /** What the user can try, on the error page; the error code's general hint otherwise. */
  readonly hint: string | undefined
  /** For the log line only, e.g. the upstream's own answer. */
  readonly details: LogDetails

  constructor(status: number, error: string, description: string, options: { cause?: unknown; headers?: Record<string, string>; hint?: string | undefined; details?: LogDetails } = {}) {
    super(description, { cause: options.cause })
    this.name = 'OAuthError'
    this.status = status
    this.error = error
    this.headers = options.headers ?? {}
    this.hint = options.hint
    this.details = options.details ?? {}
  }
}

/** The step each failure happened in, set by `step()`; the innermost step wins. */
const failedSteps = new WeakMap<object, string>()

/**
 * Names a step of an endpoint (`checkPkce`, `exchangeUpstreamCode`) so that
 * the log line of a failure inside it says where the request stopped.
 */
export function step<A extends unknown[], R>(name: string, work: (...args: A) => R): (...args: A) => R {
  const mark = (err: unknown) => {
    if (err !== null && typeof err === 'object' && !failedSteps.has(err)) failedSteps.set(err, name)
    return err
  }
  return (...args: A): R => {
    try {
      const result = work(...args)
      return (result instanceof Promise ? result.catch((err: unknown) => Promise.reject(mark(err))) : result) as R
    } catch (err) {
      throw mark(err)
    }
  }
}

/** Who the log line of a failure is about, once the endpoint knows the client. */
export interface ClientNote {
  name?: string | undefined
  /** clientHandle(): short and stable, unlike the sealed client id. */
  handle: string
}

/** RFC 6749 §5.2: 401, with a challenge, so that clients re-register or fix their credentials. */
export class InvalidClient extends OAuthError {
  constructor(description: string) {
    super(401, 'invalid_client', description, { headers: { 'www-authenticate': 'Basic realm="oauth-gateway"' } })
  }
}

const plain = (error: string) => (description: string) => new OAuthError(400, error, description)
export const invalidRequest = plain('invalid_request')
export const invalidGrant = plain('invalid_grant')
export const invalidScope = plain('invalid_scope')
export const invalidTarget = plain('invalid_target')
export const unsupportedGrantType = plain('unsupported_grant_type')
export const unsupportedResponseType = plain('unsupported_response_type')
export const invalidRedirectUri = plain('invalid_redirect_uri')
export const invalidClientMetadata = plain('invalid_client_metadata')

/** A request that reached a replica while it shuts down: another replica (or this one restarted) will take it. */
export function shuttingDown(): OAuthError {
  return new OAuthError(503, 'temporarily_unavailable', 'the gateway is shutting down; send the request again', { headers: { connection: 'close', 'retry-after': '1' } })
}

/** Where an authorization error goes once the client's redirect URI is known to be safe. */
export interface RedirectBack {
  redirectUri: string
  state?: string | undefined
  issuer: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by /authorize and /callback once the client's redirect URI is validated. */
    redirectBack: RedirectBack | null
    /** Set once the endpoint knows which client is asking, for the log line of a failure. */
    oauthClient: ClientNote | null
  }
  interface FastifyContextConfig {
    /** A browser endpoint: errors are HTML pages (or redirects), never JSON. */
    browser?: boolean
  }
}

/** What the user can try, shown on the error page. */
const PAGE_HINTS: Record<string, string> = {
  invalid_client: 'The app that sent you here is not registered with this sign-in service. Remove the connector in the app and add it again.',
  invalid_redirect_uri: 'The app asked to send you back to an address this sign-in service does not allow. Ask the app or your administrator to check the connector settings.',
  invalid_request: 'Go back to the app and start connecting again.',
  temporarily_unavailable: 'The NeonPanel sign-in service is not reachable right now. Wait a minute, then start connecting again from the app.',
}

/** Maps anything thrown to an OAuthError; unknown faults become a fixed `server_error`. */
export function toOAuthError(err: unknown): OAuthError {
  if (err instanceof OAuthError) return err
  if (err instanceof StoreUnavailable) return new OAuthError(503, 'temporarily_unavailable', 'the gateway state store is unavailable; try again shortly', { cause: err })
  const fastifyError = err as Partial<FastifyError>
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    // Fastify's own client errors: bad JSON, unsupported media type, body too large, schema failures.
    const status = fastifyError.validation ? 400 : fastifyError.statusCode
    return new OAuthError(status, 'invalid_request', fastifyError.message ?? 'the request is malformed', { cause: err })
  }
  return new OAuthError(500, 'server_error', 'the gateway failed unexpectedly; the fault is logged', { cause: err })
}

/**
 * The log line of a failure: the client, the step, the error as sent, and
 * what the error adds for the log (the upstream's own answer). The raw cause
 * of an OAuthError is not logged, since an upstream's error can carry its
 * whole token response; only faults of the gateway itself log their stack.
 */
function logFailure(err: unknown, oauth: OAuthError, request: FastifyRequest) {
  const line = {
    endpoint: request.route?.url,
    step: err !== null && typeof err === 'object' ? failedSteps.get(err) : undefined,
    outcome: oauth.status >= 500 ? 'failed' : 'refused',
    client: request.oauthClient ?? undefined,
    flow: request.flow ?? undefined,
    error: oauth.error,
    error_description: oauth.message,
    ...oauth.details,
    ...(err instanceof OAuthError || oauth.status < 500 ? {} : { err }),
  }
  if (oauth.status >= 500) request.log.error(line, 'request failed')
  else request.log.info(line, 'request refused')
}

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply) {
  // No route hook ran (app.ts): the answer gets its id here, and the not-found answer CORS, so a page probing a wrong path reads it.
  if (request.route === null) {
    if (request.is404) allowCrossOrigin(reply)
    identify(request, reply, request.is404)
  }
  const oauth = toOAuthError(err)
  logFailure(err, oauth, request)

  const back = request.redirectBack
  if (back) return redirectBrowser(request, reply, authorizationErrorUrl(back, oauth))

  if (request.route?.browser) {
    const hint = oauth.hint ?? PAGE_HINTS[oauth.error] ?? PAGE_HINTS.invalid_request!
    return reply
      // An error page is a 400 whatever the code, but an outage (5xx) or a rate limit (429) keeps its status.
      .code(oauth.status >= 500 || oauth.status === 429 ? oauth.status : 400)
      .headers({ ...PAGE_HEADERS, ...oauth.headers })
      .send(renderErrorPage(oauth.error, oauth.message, hint))
  }

  return reply
    .code(oauth.status)
    .headers({ ...oauth.headers, 'cache-control': 'no-store', pragma: 'no-cache' })
    .send({ error: oauth.error, error_description: describeForClient(oauth.message) })
}

/**
 * RFC 6749 §5.2 and §4.1.2.1: error_description is printable ASCII without
 * `"` or `\`. Descriptions quote client input, so they are made to fit and
 * kept short.
 */
export function describeForClient(message: string): string {
  const fitted = message
    .replace(/"/g, "'")
    .replace(/\\/g, '/')
    // The gateway's own descriptions cite specs as "RFC 7636 §4.6"; ASCII has no section sign.
    .replace(/§/g, 'section ')
    .replace(/…/g, '...')
    .replace(/[^\x20-\x7E]/g, '?')
  return fitted.length > 300 ? `${fitted.slice(0, 297)}...` : fitted
}

/** RFC 6749 §4.1.2.1 with RFC 9207's `iss`. */
export function authorizationErrorUrl(back: RedirectBack, err: OAuthError): string {
  const url = new URL(back.redirectUri)
  url.searchParams.set('error', err.error)
  url.searchParams.set('error_description', describeForClient(err.message))
  if (back.state !== undefined) url.searchParams.set('state', back.state)
  url.searchParams.set('iss', back.issuer)
  return url.href
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply) {
  return errorHandler(new OAuthError(404, 'invalid_request', `no such endpoint: ${request.method} ${request.url.split('?')[0]}`), request, reply)
}

/** What Node's HTTP parser refuses before a request exists, and how it is answered. */
function clientFault(code: string | undefined): [number, string] {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return [408, 'the request was not received in time']
  if (code === 'HPE_HEADER_OVERFLOW') return [431, 'the request headers are too large']
  return [400, 'the request is not valid HTTP']
}

/** A request line for one of the browser endpoints, which answer with the HTML page. */
const BROWSER_REQUEST_LINE = /^(?:(?:GET|HEAD|POST) \/authorize|(?:GET|HEAD) \/callback)(?:[?\s]|$)/

/**
 * Fastify's `clientErrorHandler`: a malformed request, oversized headers or a
 * client too slow to send its request (server.headersTimeoutMs,
 * requestTimeoutMs) get the OAuth error shape too, and the connection is
 * closed. When the request line is at hand (oversized headers) and names a
 * browser endpoint, the answer is the HTML error page.
 */
export function clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException & { rawPacket?: unknown }, socket: Duplex) {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, description] = clientFault(err.code)
  this.log.debug({ code: err.code, status }, 'client error')
  // A response already under way (a pipelined request) cannot be followed by another one.
  const busy = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent
  if (socket.writable && !busy) {
    const browser = Buffer.isBuffer(err.rawPacket) && BROWSER_REQUEST_LINE.test(err.rawPacket.subarray(0, 32).toString('latin1'))
    const [headers, body] = browser
      ? [PAGE_HEADERS, renderErrorPage('invalid_request', description, PAGE_HINTS.invalid_request!)]
      : [{ 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }, JSON.stringify({ error: 'invalid_request', error_description: description })]
    const lines = Object.entries({ ...headers, connection: 'close', 'content-length': String(Buffer.byteLength(body)) }).map(([name, value]) => `${name}: ${value}\r\n`)
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${lines.join('')}\r\n${body}`)
  }
  socket.destroy()
}

/** Fastify's `frameworkErrors` (a malformed URL, an overlong path parameter): through the one error handler. */
export function frameworkErrorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  return errorHandler(err, request, reply)
}
