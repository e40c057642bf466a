/**
 * OAuth errors and the one place where any error becomes a response:
 * JSON in the RFC 6749 §5.2 shape on back-channel endpoints, a redirect to the
 * client once /authorize has validated its redirect URI (RFC 6749 §4.1.2.1),
 * and an HTML page on browser endpoints before that.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { PAGE_HEADERS, redirectBrowser, renderErrorPage } from './pages.ts'
import { StoreUnavailable } from './store.ts'

/** An error whose description is written for the client; anything else is answered with a fixed `server_error`. */
export class OAuthError extends Error {
  readonly status: number
  readonly error: string
  readonly headers: Record<string, string>

  constructor(status: number, error: string, description: string, options: { cause?: unknown; headers?: Record<string, string> } = {}) {
    super(description, { cause: options.cause })
    this.name = 'OAuthError'
    this.status = status
    this.error = error
    this.headers = options.headers ?? {}
  }
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
  }
  interface FastifyContextConfig {
    /** A browser endpoint: errors are HTML pages (or redirects), never JSON. */
    browser?: boolean
    /** Read by @fastify/cors: false on endpoints only a browser navigates to. */
    cors?: false
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

export function errorHandler(err: unknown, request: FastifyRequest, reply: FastifyReply) {
  const oauth = toOAuthError(err)
  if (oauth.status >= 500) request.log.error({ err, error: oauth.error }, 'request failed')
  else request.log.info({ error: oauth.error, error_description: oauth.message }, 'request refused')

  const back = request.redirectBack
  if (back) return redirectBrowser(request, reply, authorizationErrorUrl(back, oauth))

  if (request.routeOptions.config?.browser) {
    const hint = PAGE_HINTS[oauth.error] ?? PAGE_HINTS.invalid_request!
    return reply
      .code(oauth.status >= 500 ? oauth.status : 400)
      .headers(PAGE_HEADERS)
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
  const fitted = message.replace(/"/g, "'").replace(/\\/g, '/').replace(/[^\x20-\x7E]/g, '?')
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
