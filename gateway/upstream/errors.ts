/**
 * The one boundary where upstream failures become gateway errors, with one
 * switch. An OAuth error from the upstream keeps its code, whatever the HTTP
 * status it came with (some upstreams answer every error with 500), except
 * the codes that mean the gateway's own client is misconfigured, which
 * become 502 `server_error` (passed on, they would make clients re-register
 * in a loop). Transport failures become 503/504 `temporarily_unavailable`;
 * anything that is not an OAuth answer (an HTML page, a 500 without an OAuth
 * body) becomes 502 `server_error`. The client gets a description naming
 * the upstream's answer; the log gets its status, content type, error code
 * and, for a non-OAuth answer, a short redacted excerpt.
 */
import { ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client'
import { InvalidClient, OAuthError } from '../errors.ts'
import { codesOf, UpstreamFault, type FaultKind } from './fetch.ts'

/** Which upstream request failed, as the descriptions and log lines name it. */
export type UpstreamCall = 'discovery' | 'authorization' | 'token (authorization_code)' | 'token (refresh_token)' | 'revocation' | 'registration'

/** What the upstream answered, for the log. */
export interface UpstreamAnswer {
  status?: number
  content_type?: string
  error?: string
  error_description?: string
  /** The start of a non-OAuth body, redacted. */
  excerpt?: string
}

const TIMEOUT_CODES = new Set(['OAUTH_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'TimeoutError'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
/** Upstream error codes that say the gateway's own upstream client or configuration is wrong, not the app. */
const GATEWAY_FAULTS: Record<string, string> = {
  invalid_client: 'check UPSTREAM_CLIENT_ID, UPSTREAM_CLIENT_SECRET and upstream.tokenEndpointAuthMethod',
  unauthorized_client: 'the gateway client at the upstream must be allowed the authorization_code and refresh_token grants',
  unsupported_grant_type: 'the gateway client at the upstream must be allowed the authorization_code and refresh_token grants',
  invalid_target: 'the upstream rejects the RFC 8707 resource parameter: set upstream.resource to drop, or map it',
}
/** RFC 6749 §5.2: the characters an error code may have; anything else is not an OAuth answer. */
const ERROR_CODE = /^[\x20\x21\x23-\x5B\x5D-\x7E]{1,64}$/
const EXCERPT_LENGTH = 200
const MAX_BODY_READ = 16 * 1024

/**
 * Replaces long token-like runs (codes, tokens, secrets: letters and digits
 * mixed, 24 characters or more) and cuts the text short, for anything from
 * the upstream that goes to a log line or a client.
 */
export function redact(text: string, max = 300): string {
  const cleaned = text.replace(/[A-Za-z0-9_\-.~+/=]{24,}/g, (run) => (/\d/.test(run) && /[A-Za-z]/.test(run) ? '[redacted]' : run))
  return cleaned.length > max ? `${cleaned.slice(0, max)}…` : cleaned
}

/** Issuers that differ only by a trailing slash name the same server. */
export function sameIssuer(a: string, b: string): boolean {
  return a.replace(/\/$/, '') === b.replace(/\/$/, '')
}

/** The UpstreamFault along an error's cause chain (openid-client wraps what its fetch throws). */
function faultIn(err: unknown): UpstreamFault | undefined {
  for (let current = err, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    if (current instanceof UpstreamFault) return current
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** The innermost message along the cause chain: oauth4webapi's own words about what it refused. */
function innermostMessage(err: unknown): string | undefined {
  let message: string | undefined
  for (let current = err, depth = 0; current instanceof Error && depth < 8; depth++) {
    message = current.message
    current = current.cause
  }
  return message
}

interface ResponseLike {
  status: number
  headers: { get(name: string): string | null }
  body: ReadableStream<Uint8Array> | null
  bodyUsed: boolean
}

function isResponse(value: unknown): value is ResponseLike {
  const candidate = value as Partial<ResponseLike> | null
  return !!candidate && typeof candidate === 'object' && typeof candidate.status === 'number' && typeof candidate.headers?.get === 'function' && 'bodyUsed' in candidate
}

/** The upstream's HTTP response along the error's chain (openid-client keeps it as `response` or `cause`). */
function responseOf(err: unknown): ResponseLike | undefined {
  for (let current = err, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    if (isResponse(current)) return current
    const { response } = current as { response?: unknown }
    if (isResponse(response)) return response
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

async function readText(response: ResponseLike): Promise<string> {
  if (!response.body || response.bodyUsed) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (size < MAX_BODY_READ) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.length
    }
  } catch {
    // A body that fails halfway tells what it told so far.
  } finally {
    await reader.cancel().catch(() => undefined)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** Reads what the upstream answered, when it answered at all. */
async function readAnswer(err: unknown): Promise<UpstreamAnswer | undefined> {
  const response = responseOf(err)
  if (err instanceof ResponseBodyError) {
    return { status: err.status, content_type: response?.headers.get('content-type') ?? undefined, error: err.error, error_description: err.error_description }
  }
  if (!response) return undefined
  const answer: UpstreamAnswer = { status: response.status, content_type: response.headers.get('content-type') ?? undefined }
  const text = await readText(response)
  try {
    const body = JSON.parse(text) as { error?: unknown; error_description?: unknown }
    if (body && typeof body.error === 'string' && body.error) {
      return { ...answer, error: body.error, error_description: typeof body.error_description === 'string' ? body.error_description : undefined }
    }
  } catch {
    // Not JSON: an HTML error page, a proxy's answer.
  }
  return text ? { ...answer, excerpt: redact(text.replace(/\s+/g, ' ').trim(), EXCERPT_LENGTH) } : answer
}

/** Turns any failure of an upstream call into the OAuthError the client gets, with the upstream's answer for the log. */
export async function translateUpstreamError(err: unknown, call: UpstreamCall, context: Record<string, unknown> = {}): Promise<OAuthError> {
  if (err instanceof OAuthError) return err
  const codes = codesOf(err)
  const answer = await readAnswer(err)
  const message = innermostMessage(err)
  const details = { upstream: { call, ...context, ...answer, code: codes[0], message: message && redact(message) } }
  const options = { cause: err, details }

  // Classified where it happened (fetch.ts): the deadline passed, the connection failed, or the answer broke the rules.
  const fault = faultIn(err)
  if (fault) return fromFault(fault.kind, call, options)
  if (answer?.error && ERROR_CODE.test(answer.error)) return fromOAuthAnswer(answer as UpstreamAnswer & { error: string }, call, options)
  // A gateway or maintenance page in front of the upstream keeps its meaning.
  if (answer?.status === 503) return fromFault('unreachable', call, options)
  if (answer?.status === 504) return fromFault('timeout', call, options)
  if (answer?.status !== undefined) {
    const type = answer.content_type ? ` (${answer.content_type.split(';')[0]})` : ''
    return new OAuthError(502, 'server_error', `the NeonPanel sign-in service answered the ${call} request with HTTP ${answer.status}${type} instead of an OAuth JSON answer`, options)
  }
  if (codes.some((code) => TIMEOUT_CODES.has(code))) {
    return new OAuthError(504, 'temporarily_unavailable', `the NeonPanel sign-in service did not answer the ${call} request in time`, options)
  }
  const unreachable = codes.find((code) => UNREACHABLE_CODES.has(code))
  if (unreachable) {
    return new OAuthError(503, 'temporarily_unavailable', `the NeonPanel sign-in service cannot be reached for the ${call} request (${unreachable})`, options)
  }
  return new OAuthError(502, 'server_error', `the NeonPanel sign-in service gave a ${call} answer the gateway cannot accept${message ? `: ${redact(message, 200)}` : ''}`, options)
}

function fromFault(kind: FaultKind, call: UpstreamCall, options: { cause: unknown; details: { upstream: Record<string, unknown> } }): OAuthError {
  switch (kind) {
    case 'timeout':
      return new OAuthError(504, 'temporarily_unavailable', `the NeonPanel sign-in service did not answer the ${call} request in time`, options)
    case 'unreachable':
      return new OAuthError(503, 'temporarily_unavailable', `the NeonPanel sign-in service cannot be reached for the ${call} request`, options)
    case 'bad_answer':
      return new OAuthError(502, 'server_error', `the NeonPanel sign-in service gave a ${call} answer that is not a valid OAuth response`, options)
  }
}

function fromOAuthAnswer(answer: UpstreamAnswer & { error: string }, call: UpstreamCall, options: { cause: unknown; details: { upstream: Record<string, unknown> } }): OAuthError {
  const said = `${answer.error}${answer.error_description ? `: ${redact(answer.error_description)}` : ''}`
  const fault = GATEWAY_FAULTS[answer.error]
  if (fault) {
    const details = { ...options.details, hint: fault }
    return new OAuthError(502, 'server_error', `the NeonPanel sign-in service refused the gateway's own ${call} request (${said}); the gateway's configuration must be fixed, not the app's`, { ...options, details })
  }
  if (answer.error === 'temporarily_unavailable') {
    return new OAuthError(503, 'temporarily_unavailable', `the NeonPanel sign-in service is temporarily unavailable (${said})`, options)
  }
  if (answer.error === 'server_error') {
    return new OAuthError(502, 'server_error', `the NeonPanel sign-in service failed the ${call} request (${said})`, options)
  }
  // RFC 6749 §5.2: the code is the client's to act on (invalid_grant: authorize again), with the status it calls for.
  return new OAuthError(400, answer.error, `the NeonPanel sign-in service refused the ${call} request: ${said}`, options)
}

/**
 * For a client registered at the upstream (registration passthrough), the
 * upstream's `invalid_client` (RFC 6749 §5.2, a JSON body or only a 401
 * challenge) means that registration is gone or expired: the client is told
 * 401 `invalid_client` so that it registers again.
 */
export async function translateRegisteredClientError(err: unknown, call: UpstreamCall, context: Record<string, unknown> = {}): Promise<OAuthError> {
  const refusedClient = err instanceof ResponseBodyError ? err.error === 'invalid_client' : err instanceof WWWAuthenticateChallengeError && err.status === 401
  if (refusedClient) {
    return new InvalidClient('the NeonPanel sign-in service no longer knows this client: register it again')
  }
  return translateUpstreamError(err, call, context)
}

/** Front mode: the MCP server failed before its response began; afterwards the client's connection is simply cut. */
export function translateMcpServerError(err: unknown): OAuthError {
  if (err instanceof OAuthError) return err
  const codes = codesOf(err)
  if (codes.some((code) => TIMEOUT_CODES.has(code))) {
    return new OAuthError(504, 'temporarily_unavailable', 'the MCP server did not answer in time', { cause: err })
  }
  if (codes.some((code) => UNREACHABLE_CODES.has(code))) {
    return new OAuthError(503, 'temporarily_unavailable', 'the MCP server cannot be reached', { cause: err })
  }
  return new OAuthError(502, 'server_error', 'the request to the MCP server failed', { cause: err })
}
