/**
 * Client authentication at the token and revocation endpoints (RFC 6749
 * §2.3.1), by the method the client registered and no other.
 */
import type { FastifyRequest } from 'fastify'
import { clientHandle, type AuthMethod, type ClientRegistry, type RegisteredClient } from './clients.ts'
import { InvalidClient, invalidRequest, step } from './errors.ts'

interface Credentials {
  clientId: string
  clientSecret?: string
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

function presentedCredentials(request: FastifyRequest, body: Record<string, unknown>): Credentials {
  const header = request.headers.authorization
  const bodyId = optionalString(body, 'client_id')
  const bodySecret = optionalString(body, 'client_secret')
  if (header !== undefined) {
    if (bodySecret !== undefined) throw invalidRequest('client_secret: sent in the body as well as in Basic credentials; use one client authentication method (RFC 6749 §2.3)')
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
export const authenticateClient = step('authenticateClient', (request: FastifyRequest, body: Record<string, unknown>, clients: ClientRegistry): RegisteredClient => {
  const credentials = presentedCredentials(request, body)
  const client = clients.find(credentials.clientId)
  // An id sealed under a key the gateway no longer has (or never had) is stale: the client registers again.
  if (!client) throw new InvalidClient('client_id: unknown to this gateway (stale or never registered); register the client again (RFC 7591)')
  request.oauthClient = { name: client.client_name, handle: clientHandle(client.client_id) }
  if (credentials.method !== client.token_endpoint_auth_method) {
    throw new InvalidClient(`client authentication: the client registered token_endpoint_auth_method ${client.token_endpoint_auth_method} but used ${credentials.method} (RFC 6749 §2.3)`)
  }
  if (credentials.clientSecret !== undefined && !clients.verifySecret(client, credentials.clientSecret)) {
    throw new InvalidClient('client_secret: is not the secret issued at registration')
  }
  return client
})
