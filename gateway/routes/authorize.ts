/**
 * The authorization endpoint. Until the client and its redirect URI are
 * known to be good, every error is an HTML page (never a redirect, RFC 6749
 * §4.1.2.1); after that, errors go back to the client. The browser then goes
 * to the upstream with the gateway's own callback, its own PKCE, and the
 * transaction sealed into `state`.
 */
import { randomUUID } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { randomPKCECodeVerifier, calculatePKCECodeChallenge } from 'openid-client'
import type { Gateway } from '../app.ts'
import { clientHandle, type RegisteredClient } from '../clients.ts'
import { OAuthError, invalidRequest, invalidScope, invalidTarget, unsupportedResponseType } from '../errors.ts'
import { optional, parametersOf, required, type Parameters } from '../params.ts'
import { isValidChallenge } from '../pkce.ts'
import { normaliseRedirectUri, sameRedirectUri } from '../redirect-uri.ts'
import { redirectBrowser } from '../pages.ts'

/** What the gateway remembers across the upstream round trip, sealed into the upstream `state`. */
export interface Transaction {
  /** Single-use id. */
  j: string
  /** clientHandle() of the client. */
  c: string
  /** The client's redirect URI and state. */
  r: string
  s?: string | undefined
  /** The client's PKCE challenge (S256). */
  cc: string
  /** The gateway's own PKCE verifier towards the upstream. */
  v: string
  /** The scope asked of the upstream, and the RFC 8707 resource the client named. */
  sc: string
  res?: string | undefined
}

export async function authorize(app: FastifyInstance) {
  const gateway = app.gateway
  const handler = async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
    const parameters = parametersOf(request.method === 'POST' ? request.body : request.query)
    const client = findClient(gateway, parameters)
    const redirectUri = checkRedirectUri(gateway, client, parameters)
    const state = optional(parameters, 'state', 2048)
    request.redirectBack = { redirectUri, state, issuer: gateway.config.publicUrl }

    checkResponseType(parameters)
    const codeChallenge = checkPkce(parameters)
    const scope = resolveScope(gateway, parameters)
    const resource = checkResource(gateway, parameters)

    const verifier = randomPKCECodeVerifier()
    const transaction: Transaction = { j: randomUUID(), c: clientHandle(client.client_id), r: redirectUri, s: state, cc: codeChallenge, v: verifier, sc: scope, res: resource }
    const upstreamUrl = await gateway.upstream.authorizationUrl({
      response_type: 'code',
      scope,
      state: gateway.sealer.seal('transaction', transaction, gateway.config.lifetimes.transactionSeconds),
      code_challenge: await calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    })
    request.log.info({ client_name: client.client_name, step: 'authorize' }, 'sending the browser to the upstream')
    return redirectBrowser(request, reply, upstreamUrl.href)
  }

  app.get('/authorize', { config: { browser: true, cors: false } }, handler)
  app.post('/authorize', { config: { browser: true, cors: false }, bodyLimit: gateway.config.server.bodyLimits.authorize }, handler)
}

function findClient(gateway: Gateway, parameters: Parameters): RegisteredClient {
  const clientId = required(parameters, 'client_id', 8192)
  const client = gateway.clients.find(clientId)
  if (!client) throw new OAuthError(400, 'invalid_client', 'This app is not registered with the gateway (unknown client_id).')
  return client
}

/** Exact match after normalisation (scheme and host case, default port), and still allowed by ops. */
function checkRedirectUri(gateway: Gateway, client: RegisteredClient, parameters: Parameters): string {
  const requested = optional(parameters, 'redirect_uri')
  if (requested === undefined) {
    if (client.redirect_uris.length === 1) return client.redirect_uris[0]!
    throw new OAuthError(400, 'invalid_redirect_uri', 'redirect_uri is required: the app registered more than one.')
  }
  const checked = normaliseRedirectUri(requested)
  if (!checked.ok) throw new OAuthError(400, 'invalid_redirect_uri', `The redirect address ${checked.reason}.`)
  if (!client.redirect_uris.some((registered) => sameRedirectUri(registered, checked.url))) {
    throw new OAuthError(400, 'invalid_redirect_uri', `The redirect address ${checked.uri} is not one this app registered.`)
  }
  if (!gateway.allowlist.allows(checked.url)) {
    throw new OAuthError(400, 'invalid_redirect_uri', `The redirect address ${checked.uri} is no longer allowed by this gateway.`)
  }
  return checked.uri
}

function checkResponseType(parameters: Parameters) {
  const responseType = required(parameters, 'response_type')
  if (responseType !== 'code') throw unsupportedResponseType('only response_type=code is supported')
}

/** PKCE with S256 is required (OAuth 2.1, MCP authorization). */
function checkPkce(parameters: Parameters): string {
  const challenge = required(parameters, 'code_challenge')
  const method = optional(parameters, 'code_challenge_method')
  if (method !== 'S256') throw invalidRequest('code_challenge_method must be S256')
  if (!isValidChallenge(challenge)) throw invalidRequest('code_challenge must be a base64url SHA-256 digest (43 characters)')
  return challenge
}

/** An absent or empty scope means the configured default scopes. */
function resolveScope(gateway: Gateway, parameters: Parameters): string {
  const requested = (optional(parameters, 'scope') ?? '').split(' ').filter(Boolean)
  if (requested.length === 0) return gateway.config.scopes.default.join(' ')
  const unknown = requested.filter((scope) => !gateway.config.scopes.supported.includes(scope))
  if (unknown.length) throw invalidScope(`unsupported scope: ${unknown.join(' ')}`)
  return [...new Set(requested)].join(' ')
}

/** RFC 8707: a resource, when named, must be the protected MCP server (with or without a trailing slash). */
function checkResource(gateway: Gateway, parameters: Parameters): string | undefined {
  const resource = optional(parameters, 'resource')
  if (resource === undefined) return undefined
  if (resource.replace(/\/$/, '') !== gateway.config.mcpResource.replace(/\/$/, '')) {
    throw invalidTarget(`resource must be ${gateway.config.mcpResource}`)
  }
  return gateway.config.mcpResource
}
