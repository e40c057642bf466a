/**
 * Registration passthrough (RFC 7591 at the upstream): one upstream client per
 * gateway client, whose only redirect URI is the gateway's callback, since the
 * upstream only ever sends the browser back to the gateway. The answer is read
 * here and every refusal becomes an OAuthError with the upstream's own words
 * in the log, not in the client's face.
 */
import { OAuthError } from '../errors.ts'

export type UpstreamAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none'

/** A client registered at the upstream for one gateway client. */
export interface UpstreamClient {
  clientId: string
  clientSecret?: string | undefined
  authMethod: UpstreamAuthMethod
}

export interface RegistrationRequest {
  /** Shown by the upstream on its sign-in or consent page. */
  client_name?: string | undefined
  grant_types: string[]
}

export interface UpstreamRegistration extends UpstreamClient {
  /** RFC 7591 §3.2.1 `client_secret_expires_at`, when the upstream sets one (seconds since the epoch). */
  expiresAt?: number | undefined
}

const USABLE_METHODS = new Set<string>(['client_secret_basic', 'client_secret_post', 'none'])
const MAX_ANSWER_BYTES = 64 * 1024

/** The RFC 7591 §2 metadata the gateway sends: nothing the client chose reaches the upstream but its name and grants. */
export function upstreamClientMetadata(request: RegistrationRequest, callbackUrl: string, authMethod: UpstreamAuthMethod) {
  return {
    redirect_uris: [callbackUrl],
    grant_types: request.grant_types,
    response_types: ['code'],
    token_endpoint_auth_method: authMethod,
    ...(request.client_name ? { client_name: request.client_name } : {}),
  }
}

/** RFC 7591 §3.2: reads the upstream's answer; anything but a usable client is an OAuthError. */
export async function readRegistrationResponse(response: Response, callbackUrl: string, requested: UpstreamAuthMethod): Promise<UpstreamRegistration> {
  const text = await boundedText(response)
  const body = parseObject(text)
  if (response.status !== 201 && response.status !== 200) throw registrationRefused(response.status, body, text)
  if (!body || typeof body.client_id !== 'string' || body.client_id === '') {
    throw notOAuth(`the registration answer (HTTP ${response.status}) has no client_id`, text)
  }
  // §3.2.1: the server may change what was asked; the gateway can only work with its own callback.
  if (Array.isArray(body.redirect_uris) && !body.redirect_uris.includes(callbackUrl)) {
    throw new OAuthError(502, 'server_error', 'the NeonPanel sign-in service registered the client without the gateway callback as redirect URI')
  }
  const secret = typeof body.client_secret === 'string' && body.client_secret ? body.client_secret : undefined
  const method = typeof body.token_endpoint_auth_method === 'string' ? body.token_endpoint_auth_method : secret ? requested : 'none'
  if (!USABLE_METHODS.has(method) || (method !== 'none' && !secret)) {
    throw new OAuthError(502, 'server_error', `the NeonPanel sign-in service registered the client for ${method}${secret ? '' : ' without a secret'}, which the gateway cannot use`)
  }
  const expiresAt = typeof body.client_secret_expires_at === 'number' && body.client_secret_expires_at > 0 ? body.client_secret_expires_at : undefined
  return { clientId: body.client_id, clientSecret: method === 'none' ? undefined : secret, authMethod: method as UpstreamAuthMethod, expiresAt }
}

/** §3.2.2. The client hears about its own metadata; everything else is the gateway's or the upstream's fault. */
function registrationRefused(status: number, body: Record<string, unknown> | undefined, text: string): OAuthError {
  const error = typeof body?.error === 'string' ? body.error : undefined
  const description = typeof body?.error_description === 'string' ? body.error_description.slice(0, 300) : undefined
  const cause = new Error(`upstream registration answered HTTP ${status}: ${text.slice(0, 1000)}`)
  if (status === 401 || status === 403) {
    return new OAuthError(502, 'server_error', `the NeonPanel sign-in service refused to register a client for the gateway (HTTP ${status}); check UPSTREAM_REGISTRATION_TOKEN`, { cause })
  }
  if (!error) return notOAuth(`the registration answer (HTTP ${status}) is not an OAuth error`, text)
  if (error === 'invalid_redirect_uri') {
    return new OAuthError(502, 'server_error', 'the NeonPanel sign-in service refused the gateway callback as a redirect URI', { cause })
  }
  if (error === 'temporarily_unavailable') return new OAuthError(503, 'temporarily_unavailable', 'the NeonPanel sign-in service is unavailable', { cause })
  if (status < 500 && error === 'invalid_client_metadata') {
    return new OAuthError(400, 'invalid_client_metadata', `the NeonPanel sign-in service refused the registration${description ? `: ${description}` : ''}`, { cause })
  }
  return new OAuthError(502, 'server_error', `the NeonPanel sign-in service refused the registration (${error})`, { cause })
}

function notOAuth(message: string, text: string) {
  return new OAuthError(502, 'server_error', `the NeonPanel sign-in service gave ${message}`, { cause: new Error(text.slice(0, 1000)) })
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}

async function boundedText(response: Response): Promise<string> {
  const bytes = new Uint8Array(await response.arrayBuffer())
  if (bytes.length > MAX_ANSWER_BYTES) throw notOAuth('a registration answer larger than 64 KiB', '')
  return new TextDecoder().decode(bytes)
}
