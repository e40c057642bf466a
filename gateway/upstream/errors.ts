/**
 * The one boundary where upstream failures become gateway errors. An OAuth
 * error from the upstream keeps its code; transport failures become 503/504
 * `temporarily_unavailable`; anything that is not an OAuth response becomes
 * 502 `server_error`. The upstream's raw answer goes to the log, not to the client.
 */
import { ClientError, ResponseBodyError, WWWAuthenticateChallengeError } from 'openid-client'
import { InvalidClient, OAuthError } from '../errors.ts'

const TIMEOUT_CODES = new Set(['OAUTH_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'TimeoutError'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
const NOT_OAUTH_CODES = new Set(['OAUTH_RESPONSE_IS_NOT_JSON', 'OAUTH_RESPONSE_IS_NOT_CONFORM', 'OAUTH_PARSE_ERROR', 'OAUTH_INVALID_RESPONSE', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'])

/** Every `code` (and timeout `name`) along an error's cause chain. */
function codesOf(err: unknown): string[] {
  const codes: string[] = []
  for (let current = err, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const { code, name, cause } = current as { code?: unknown; name?: unknown; cause?: unknown }
    if (typeof code === 'string') codes.push(code)
    if (name === 'TimeoutError') codes.push(name)
    current = cause
  }
  return codes
}

export function translateUpstreamError(err: unknown): OAuthError {
  if (err instanceof OAuthError) return err
  if (err instanceof ResponseBodyError) return fromOAuthErrorBody(err)
  const codes = codesOf(err)
  if (codes.some((code) => TIMEOUT_CODES.has(code))) {
    return new OAuthError(504, 'temporarily_unavailable', 'the NeonPanel sign-in service did not answer in time', { cause: err })
  }
  if (codes.some((code) => UNREACHABLE_CODES.has(code))) {
    return new OAuthError(503, 'temporarily_unavailable', 'the NeonPanel sign-in service cannot be reached', { cause: err })
  }
  if (codes.some((code) => NOT_OAUTH_CODES.has(code))) {
    return new OAuthError(502, 'server_error', 'the NeonPanel sign-in service gave an answer that is not a valid OAuth response', { cause: err })
  }
  const message = err instanceof ClientError || err instanceof TypeError ? 'the NeonPanel sign-in service request failed' : 'the upstream call failed unexpectedly'
  return new OAuthError(502, 'server_error', message, { cause: err })
}

function fromOAuthErrorBody(err: ResponseBodyError): OAuthError {
  if (err.error === 'invalid_client') {
    // The upstream refused the gateway's own credentials. Passing invalid_client on
    // would make clients re-register forever; this is the gateway's fault, not theirs.
    return new OAuthError(502, 'server_error', 'the NeonPanel sign-in service refused the gateway credentials', { cause: err })
  }
  if (err.error === 'temporarily_unavailable') {
    return new OAuthError(503, 'temporarily_unavailable', err.error_description ?? 'the NeonPanel sign-in service is unavailable', { cause: err })
  }
  const status = err.status >= 500 ? 502 : 400
  return new OAuthError(status, err.error, err.error_description ?? `the NeonPanel sign-in service answered ${err.error}`, { cause: err })
}

/**
 * For a client registered at the upstream (registration passthrough), the
 * upstream's `invalid_client` (RFC 6749 §5.2, a JSON body or only a 401
 * challenge) means that registration is gone or expired: the client is told
 * 401 `invalid_client` so that it registers again.
 */
export function translateRegisteredClientError(err: unknown): OAuthError {
  const refusedClient = err instanceof ResponseBodyError ? err.error === 'invalid_client' : err instanceof WWWAuthenticateChallengeError && err.status === 401
  if (refusedClient) {
    return new InvalidClient('the NeonPanel sign-in service no longer knows this client: register it again')
  }
  return translateUpstreamError(err)
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
