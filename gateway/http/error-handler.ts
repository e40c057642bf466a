/**
 * The one place where any error becomes a response: JSON in the RFC 6749
 * §5.2 shape on back-channel endpoints, a redirect to the client once
 * /authorize has validated its redirect URI (RFC 6749 §4.1.2.1), and an HTML
 * page on browser endpoints before that. Always `Cache-Control: no-store`.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { authorizationErrorUrl, describeForClient, failedStep, OAuthError, toOAuthError, type ClientNote, type RedirectBack } from '../errors.ts'
import { allowCrossOrigin } from './cors.ts'
import { identify } from './log.ts'
import { PAGE_HEADERS, redirectBrowser, renderErrorPage } from './pages.ts'

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

/**
 * The log line of a failure: the client, the step, the error as sent, and
 * what the error adds for the log (the upstream's own answer). The raw cause
 * of an OAuthError is not logged, since an upstream's error can carry its
 * whole token response; only faults of the gateway itself log their stack.
 */
function logFailure(err: unknown, oauth: OAuthError, request: FastifyRequest) {
  const line = {
    endpoint: request.route?.url,
    step: failedStep(err),
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
  request.server.gateway.metrics.errorAnswered(request.route?.url ?? 'unmatched', oauth.error)

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
