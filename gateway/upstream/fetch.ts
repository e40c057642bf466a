/**
 * Every HTTP request to the upstream: one deadline for connect, headers and
 * the whole body, and a body read while it streams and dropped as soon as it
 * passes the size cap. undici's bodyTimeout only bounds the gap between two
 * chunks, so a body that trickles a byte a second would never end without the
 * deadline; openid-client then parses an answer that is complete and bounded.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { request, type Agent, type Dispatcher } from 'undici'

/** How a failed request is answered: 504 for `timeout`, 503 for `unreachable`, 502 for `bad_answer`. */
export type FaultKind = 'timeout' | 'unreachable' | 'bad_answer'

/** A transport failure of one upstream request, classified where it happened. */
export class UpstreamFault extends Error {
  readonly kind: FaultKind

  constructor(kind: FaultKind, message: string, cause?: unknown) {
    super(message, { cause })
    this.name = 'UpstreamFault'
    this.kind = kind
  }
}

/** What the upstream did on one call, for the log: status, type, size and a short excerpt without tokens. */
export interface Exchange {
  endpoint?: string
  status?: number
  contentType?: string
  bytes?: number
  excerpt?: string
}

const exchanges = new AsyncLocalStorage<Exchange>()

/** Runs `work` so that the requests it makes record what the upstream answered into `exchange`. */
export function recordingExchange<T>(exchange: Exchange, work: () => Promise<T>): Promise<T> {
  return exchanges.run(exchange, work)
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])

/** Every `code` and `name` along an error's cause chain. */
export function codesOf(err: unknown): string[] {
  const codes: string[] = []
  for (let current = err, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const { code, name, cause } = current as { code?: unknown; name?: unknown; cause?: unknown }
    if (typeof code === 'string') codes.push(code)
    if (typeof name === 'string') codes.push(name)
    current = cause
  }
  return codes
}

export interface FetchLimits {
  /** The deadline of one request, from connect to the last byte of the body. */
  timeoutMs: number
  maxResponseBytes: number
}

/**
 * A fetch for openid-client (its `customFetch`) that never outlives the
 * deadline nor holds more than the cap. Sent with undici's `request`, which
 * costs less per call than its `fetch`, and answered as a WHATWG Response.
 * Redirects are never followed (openid-client asks for `manual`).
 */
export function boundedFetch(agent: Agent, limits: FetchLimits) {
  return async function fetchWithinBounds(url: string, options: RequestInit): Promise<Response> {
    const deadline = AbortSignal.timeout(limits.timeoutMs)
    const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline
    const exchange = exchanges.getStore() ?? {}
    exchange.endpoint = new URL(url).pathname
    const timedOut = () => signal.aborted

    const headers = new Headers(options.headers)
    let body = options.body
    if (body instanceof URLSearchParams) {
      if (!headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded;charset=UTF-8')
      body = body.toString()
    }
    if (body !== undefined && body !== null && typeof body !== 'string') throw new TypeError('upstream request bodies are strings or forms')

    let response: Dispatcher.ResponseData
    try {
      response = await request(url, { method: (options.method ?? 'GET') as Dispatcher.HttpMethod, headers: [...headers].flat(), body: body ?? null, signal, dispatcher: agent })
    } catch (err) {
      throw requestFault(err, timedOut())
    }
    exchange.status = response.statusCode
    const contentType = response.headers['content-type']
    exchange.contentType = Array.isArray(contentType) ? contentType[0] : contentType

    const content = await readBounded(response, limits.maxResponseBytes, timedOut, exchange)
    if (response.statusCode < 200 || response.statusCode > 599) throw new UpstreamFault('bad_answer', `the upstream answered with HTTP status ${response.statusCode}`)
    // Statuses that cannot carry a body (Fetch standard "null body status").
    const nullBody = [204, 205, 304].includes(response.statusCode)
    return new Response(nullBody ? null : content, { status: response.statusCode, statusText: response.statusText, headers: headerPairs(response.headers) })
  }
}

function headerPairs(headers: Dispatcher.ResponseData['headers']): Array<[string, string]> {
  const pairs: Array<[string, string]> = []
  for (const [name, value] of Object.entries(headers)) {
    if (Array.isArray(value)) for (const each of value) pairs.push([name, each])
    else if (value !== undefined) pairs.push([name, value])
  }
  return pairs
}

/** A failure before the response headers arrived. */
function requestFault(err: unknown, timedOut: boolean): UpstreamFault {
  const codes = codesOf(err)
  if (timedOut || codes.some((code) => TIMEOUT_CODES.has(code))) return new UpstreamFault('timeout', 'the upstream did not answer in time', err)
  if (codes.some((code) => UNREACHABLE_CODES.has(code))) return new UpstreamFault('unreachable', 'the upstream cannot be reached', err)
  // Whatever else fails here is an answer that is not HTTP (llhttp parse errors and the like).
  return new UpstreamFault('bad_answer', 'the upstream answer is not valid HTTP', err)
}

/** Reads the whole body, never keeping more than `maxBytes`, and records a redacted excerpt. */
async function readBounded(response: Dispatcher.ResponseData, maxBytes: number, timedOut: () => boolean, exchange: Exchange): Promise<Buffer> {
  const declared = Number(response.headers['content-length'] ?? 0)
  if (declared > maxBytes) {
    response.body.destroy()
    exchange.bytes = declared
    throw new UpstreamFault('bad_answer', `the upstream answer declares ${declared} bytes, more than the ${maxBytes} allowed`)
  }
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of response.body) {
      const value = chunk as Buffer
      size += value.byteLength
      if (size > maxBytes) throw new UpstreamFault('bad_answer', `the upstream answer is larger than the ${maxBytes} bytes allowed`)
      chunks.push(value)
    }
  } catch (err) {
    response.body.destroy()
    record(exchange, Buffer.concat(chunks), size)
    if (err instanceof UpstreamFault) throw err
    if (timedOut() || codesOf(err).some((code) => TIMEOUT_CODES.has(code))) throw new UpstreamFault('timeout', 'the upstream answer did not end in time', err)
    throw new UpstreamFault('bad_answer', 'the upstream answer broke off', err)
  }
  const body = Buffer.concat(chunks, size)
  record(exchange, body, size)
  return body
}

function record(exchange: Exchange, body: Buffer, size: number) {
  exchange.bytes = size
  exchange.excerpt = excerptOf(body)
}

const EXCERPT_CHARACTERS = 200
/** JSON members whose values are credentials (token_type is not one). */
const SECRET_MEMBER = /("(?!token_type")[^"]*(?:token|secret|code|password|assertion|key)[^"]*"\s*:\s*)"(?:[^"\\]|\\.)*"?/gi
/** Anything long enough to be a token, a code or a key. */
const TOKEN_LIKE = /[A-Za-z0-9\-._~+/]{20,}=*/g

/** The start of a body for the log, with anything that could be a token removed. */
export function excerptOf(body: Buffer): string | undefined {
  if (body.length === 0) return undefined
  const text = body
    .subarray(0, 2048)
    .toString('utf8')
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x1f\x7f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .replace(SECRET_MEMBER, '$1"[redacted]"')
    .replace(TOKEN_LIKE, '[redacted]')
    .trim()
  return text.length > EXCERPT_CHARACTERS ? `${text.slice(0, EXCERPT_CHARACTERS)}…` : text
}
