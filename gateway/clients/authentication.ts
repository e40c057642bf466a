/**
 * Client authentication at the token and revocation endpoints (RFC 6749
 * §2.3.1; RFC 7523 §2.2 for private_key_jwt), by the method the client
 * registered, or one of those its metadata document shares with the gateway,
 * and no other.
 */
import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { createLocalJWKSet, decodeJwt, errors as jose, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose'
import type { Gateway } from '../context.ts'
import { ClientMetadataError, isClientIdUrl } from './metadata-documents.ts'
import type { AuthMethod, RegisteredClient } from './client.ts'
import { clientHandle } from './registry.ts'
import { InvalidClient, invalidRequest, step } from '../errors.ts'
import { nowSeconds } from '../state/seal.ts'

/** RFC 7523 §2.2. */
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
/** Asymmetric algorithms only: `none` and HMAC (a shared secret) are never accepted. */
export const ASSERTION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']
/** Clock skew tolerated on exp, nbf and iat, in seconds. */
const CLOCK_TOLERANCE = 30
/** Assertions must be short-lived: a longer exp would make the replay marks live as long. */
const MAX_ASSERTION_SECONDS = 600

interface Credentials {
  clientId: string
  clientSecret?: string
  assertion?: string
  method: AuthMethod
}

/** RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined for Basic. */
function formDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, ' '))
  } catch {
    throw new InvalidClient('the Basic credentials are not correctly percent-encoded')
  }
}

function basicCredentials(header: string): Credentials {
  const match = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header)
  if (!match) throw new InvalidClient('the Authorization header must be "Basic" followed by base64 credentials')
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) throw new InvalidClient('the Basic credentials must be client_id:client_secret')
  return { clientId: formDecode(decoded.slice(0, colon)), clientSecret: formDecode(decoded.slice(colon + 1)), method: 'client_secret_basic' }
}

function optionalString(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalidRequest(`${name} must be given once, as a string`)
  return value
}

/** RFC 7523 §3: the subject is the client id; client_id, when sent as well, must agree (§2.2). */
function assertionCredentials(body: Record<string, unknown>, bodyId: string | undefined): Credentials {
  if (optionalString(body, 'client_assertion_type') !== JWT_BEARER) throw new InvalidClient(`client_assertion_type must be ${JWT_BEARER}`)
  const assertion = optionalString(body, 'client_assertion')
  if (!assertion || assertion.length > 8192) throw new InvalidClient('client_assertion is required (a signed JWT of at most 8192 characters)')
  let subject: unknown
  try {
    subject = decodeJwt(assertion).sub
  } catch {
    throw new InvalidClient('client_assertion is not a JWT')
  }
  if (typeof subject !== 'string' || !subject) throw new InvalidClient('client_assertion must name the client in sub')
  if (bodyId !== undefined && bodyId !== subject) throw new InvalidClient('client_id differs from the client assertion subject')
  return { clientId: subject, assertion, method: 'private_key_jwt' }
}

function presentedCredentials(request: FastifyRequest, body: Record<string, unknown>): Credentials {
  const header = request.headers.authorization
  const bodyId = optionalString(body, 'client_id')
  const bodySecret = optionalString(body, 'client_secret')
  const usesAssertion = body.client_assertion !== undefined || body.client_assertion_type !== undefined
  if ([header !== undefined, bodySecret !== undefined, usesAssertion].filter(Boolean).length > 1) {
    throw invalidRequest('client authentication: use one method, not several (Basic credentials, client_secret or client_assertion; RFC 6749 §2.3)')
  }
  if (usesAssertion) return assertionCredentials(body, bodyId)
  if (header !== undefined) {
    const basic = basicCredentials(header)
    if (bodyId !== undefined && bodyId !== basic.clientId) throw invalidRequest('client_id: differs from the one in the Basic credentials')
    return basic
  }
  if (!bodyId) throw new InvalidClient('client_id: is required; client authentication failed (RFC 6749 §2.3)')
  return bodySecret === undefined
    ? { clientId: bodyId, method: 'none' }
    : { clientId: bodyId, clientSecret: bodySecret, method: 'client_secret_post' }
}

/** Returns the authenticated client, or throws 401 `invalid_client` so that the client re-registers. */
export const authenticateClient = step('authenticateClient', async (request: FastifyRequest, body: Record<string, unknown>, gateway: Gateway): Promise<RegisteredClient> => {
  const credentials = presentedCredentials(request, body)
  const found = await gateway.clients.find(credentials.clientId)
  if (!found.ok) {
    // A registered id sealed under a key the gateway no longer has (or never had) is stale: the client registers again.
    throw new InvalidClient(isClientIdUrl(credentials.clientId) ? `client_id: ${found.reason}` : 'client_id: unknown to this gateway (stale or never registered); register the client again (RFC 7591)')
  }
  const { client } = found
  request.oauthClient = { name: client.client_name, handle: clientHandle(client.client_id) }
  const accepted = client.accepted_auth_methods ?? [client.token_endpoint_auth_method]
  if (!accepted.includes(credentials.method)) {
    throw new InvalidClient(`token_endpoint_auth_method: the client is registered for ${accepted.join(' or ')} but authenticated with ${credentials.method} (RFC 6749 §2.3)`)
  }
  if (credentials.clientSecret !== undefined && !gateway.clients.verifySecret(client, credentials.clientSecret)) {
    throw new InvalidClient('client_secret: is not the secret issued at registration')
  }
  if (credentials.assertion !== undefined) await checkClientAssertion(gateway, client, credentials.assertion)
  return client
})

/**
 * RFC 7523 §3: signed by a key the client publishes, iss = sub = client_id,
 * aud = the gateway (its issuer or token endpoint), unexpired, and its jti
 * used once for as long as the assertion could be presented.
 */
async function checkClientAssertion(gateway: Gateway, client: RegisteredClient, assertion: string) {
  const claims = await verifiedClaims(gateway, client, assertion)
  const now = nowSeconds()
  const exp = claims.exp!
  if (exp - now > MAX_ASSERTION_SECONDS) throw new InvalidClient(`the client assertion must expire within ${MAX_ASSERTION_SECONDS} seconds`)
  if (typeof claims.jti !== 'string' || !claims.jti || claims.jti.length > 256) throw new InvalidClient('the client assertion needs a jti of at most 256 characters')
  const mark = `assertion:${clientHandle(client.client_id)}:${createHash('sha256').update(claims.jti).digest('base64url')}`
  if (!(await gateway.store.useOnce(mark, Math.max(1, exp - now + CLOCK_TOLERANCE)))) {
    throw new InvalidClient('the client assertion was already used (jti replayed)')
  }
}

async function verifiedClaims(gateway: Gateway, client: RegisteredClient, assertion: string): Promise<JWTPayload> {
  const first = await keysOf(gateway, client, false)
  try {
    return await verify(gateway, client, assertion, first.keys)
  } catch (err) {
    // A key the cached set lacks may be a rotation at the client: fetch its keys again, once.
    if (!(err instanceof jose.JWKSNoMatchingKey) || first.fresh) throw describe(err)
  }
  try {
    return await verify(gateway, client, assertion, (await keysOf(gateway, client, true)).keys)
  } catch (err) {
    throw describe(err)
  }
}

async function keysOf(gateway: Gateway, client: RegisteredClient, refresh: boolean) {
  try {
    return await gateway.clients.keySet(client, refresh)
  } catch (err) {
    if (err instanceof ClientMetadataError) throw new InvalidClient(`the client's keys could not be loaded: its metadata document ${err.message}`)
    throw err
  }
}

async function verify(gateway: Gateway, client: RegisteredClient, assertion: string, keys: JSONWebKeySet): Promise<JWTPayload> {
  const { payload } = await jwtVerify(assertion, createLocalJWKSet(keys), {
    issuer: client.client_id,
    subject: client.client_id,
    audience: [gateway.config.publicUrl, gateway.endpoints.token],
    algorithms: ASSERTION_ALGORITHMS,
    clockTolerance: CLOCK_TOLERANCE,
    requiredClaims: ['exp', 'jti'],
  })
  return payload
}

function describe(err: unknown): InvalidClient {
  if (err instanceof InvalidClient) return err
  if (err instanceof jose.JWTExpired) return new InvalidClient('the client assertion has expired')
  if (err instanceof jose.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return new InvalidClient(`the client assertion's aud must be the gateway's issuer or token endpoint`)
    if (err.claim === 'iss' || err.claim === 'sub') return new InvalidClient(`the client assertion's ${err.claim} must be the client_id`)
    return new InvalidClient(`the client assertion's ${err.claim} claim is invalid (${err.reason})`)
  }
  if (err instanceof jose.JWKSNoMatchingKey || err instanceof jose.JWKSMultipleMatchingKeys) return new InvalidClient('no single key the client publishes matches the client assertion')
  if (err instanceof jose.JWSSignatureVerificationFailed) return new InvalidClient(`the client assertion's signature does not verify with the client's published keys`)
  if (err instanceof jose.JOSEAlgNotAllowed) return new InvalidClient(`the client assertion must be signed with one of ${ASSERTION_ALGORITHMS.join(', ')}`)
  if (err instanceof jose.JOSEError) return new InvalidClient('the client assertion is not a valid signed JWT')
  throw err
}
