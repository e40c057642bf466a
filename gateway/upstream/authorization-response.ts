/**
 * The upstream's authorization response, as it reaches the gateway's
 * callback: for a client's sign-in and for the connected-apps page's alike.
 * An error is passed on when the one who started the sign-in can act on it,
 * else it is the gateway's fault; the `iss` must be the upstream's (RFC 9207).
 */
import { OAuthError, step } from '../errors.ts'
import { optional, type Parameters } from '../http/params.ts'
import { redact, sameIssuer } from './errors.ts'
import type { Upstream } from './index.ts'

/** Authorization error codes the client may be told as they are (RFC 6749 §4.1.2.1, OpenID Connect §3.1.2.6). */
const FORWARDED_ERRORS = new Set([
  'access_denied', 'invalid_scope', 'temporarily_unavailable', 'server_error',
  'login_required', 'consent_required', 'interaction_required', 'account_selection_required',
])

/** An authorization error from the upstream: passed on when the client can act on it, else the gateway's fault. */
export const checkUpstreamError = step('checkUpstreamError', (parameters: Parameters) => {
  const error = optional(parameters, 'error', 256)
  if (error === undefined) return
  const description = optional(parameters, 'error_description', 1024)
  const upstream = { upstream: { call: 'authorization', error, error_description: description && redact(description) } }
  if (FORWARDED_ERRORS.has(error)) {
    throw new OAuthError(400, error, description ? redact(description) : `the NeonPanel sign-in ended with ${error}`, { details: upstream })
  }
  const hint = error === 'invalid_target' ? { hint: 'the upstream rejects the RFC 8707 resource parameter: set upstream.resource to drop' } : {}
  throw new OAuthError(502, 'server_error', `the NeonPanel sign-in refused the gateway's authorization request (${error}${description ? `: ${redact(description)}` : ''})`, {
    details: { ...upstream, ...hint },
  })
})

/**
 * RFC 9207: the upstream's `iss` must be its own issuer, and present when its
 * metadata says it sends one. A trailing slash either way is tolerated; the
 * metadata's spelling is what the code exchange then checks.
 */
export const checkUpstreamIssuer = step('checkUpstreamIssuer', async (upstream: Upstream, parameters: Parameters): Promise<string | undefined> => {
  const iss = optional(parameters, 'iss')
  const metadata = await upstream.metadata()
  if (iss === undefined) {
    if (metadata.authorization_response_iss_parameter_supported) {
      throw new OAuthError(502, 'server_error', 'iss: the NeonPanel sign-in answered without its issuer, although its metadata says it sends one (RFC 9207 §2.4)')
    }
    return undefined
  }
  if (!sameIssuer(iss, metadata.issuer)) {
    throw new OAuthError(502, 'server_error', `iss: the authorization response names ${iss.slice(0, 200)} as its issuer, not ${metadata.issuer} (RFC 9207 §2.4)`)
  }
  return metadata.issuer
})
