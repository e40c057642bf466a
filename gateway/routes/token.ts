/**
 * The token endpoint. `authorization_code`: the gateway code is checked
 * (client, redirect URI, PKCE, single use) before the upstream code inside it
 * is exchanged; `refresh_token`: brokered to the upstream. The upstream's
 * access token reaches the client unchanged; its refresh token is sealed and
 * bound to the client, so only that client can use it here.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Gateway } from '../app.ts'
import { authenticateClient } from '../client-auth.ts'
import { clientHandle, type RegisteredClient } from '../clients.ts'
import { OAuthError, invalidGrant, invalidRequest, unsupportedGrantType } from '../errors.ts'
import { optional, parametersOf, required, type Parameters } from '../params.ts'
import { isValidVerifier, verifierMatches } from '../pkce.ts'
import { normaliseRedirectUri, sameRedirectUri } from '../redirect-uri.ts'
import type { TokenSet } from '../upstream/index.ts'
import type { CodeGrant } from './callback.ts'

/** A refresh token as the client holds it: the upstream's, sealed and bound to the client. */
export interface RefreshGrant {
  /** The upstream refresh token. */
  rt: string
  c: string
  sc?: string | undefined
  res?: string | undefined
}

export async function token(app: FastifyInstance) {
  const gateway = app.gateway

  app.post('/token', { bodyLimit: gateway.config.server.bodyLimits.token }, async (request: FastifyRequest, reply: FastifyReply) => {
    const parameters = parametersOf(request.body)
    const client = authenticateClient(request, parameters, gateway.clients)
    const grantType = required(parameters, 'grant_type')
    let tokens: TokenSet
    if (grantType === 'authorization_code') tokens = await authorizationCodeGrant(gateway, client, parameters)
    else if (grantType === 'refresh_token') tokens = await refreshTokenGrant(gateway, client, parameters)
    else throw unsupportedGrantType(`grant_type ${grantType} is not supported`)
    request.log.info({ client_name: client.client_name, grant_type: grantType, step: 'token' }, 'tokens issued')
    // RFC 6749 §5.1
    return reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache' }).send(tokens)
  })
}

async function authorizationCodeGrant(gateway: Gateway, client: RegisteredClient, parameters: Parameters): Promise<TokenSet> {
  const grant = openCode(gateway, client, parameters)
  checkRedirectUri(grant, parameters)
  checkPkce(grant, parameters)
  await useCodeOnce(gateway, grant)
  const tokens = await gateway.upstream.exchangeCode({ code: grant.uc, iss: grant.i, codeVerifier: grant.v })
  return bindRefreshToken(gateway, client, tokens, grant)
}

function openCode(gateway: Gateway, client: RegisteredClient, parameters: Parameters): CodeGrant {
  const grant = gateway.sealer.open<CodeGrant>('code', required(parameters, 'code', 8192))
  if (!grant) throw invalidGrant('the authorization code is invalid or has expired')
  if (grant.c !== clientHandle(client.client_id)) throw invalidGrant('the authorization code was issued to another client')
  return grant
}

/** RFC 6749 §4.1.3: when sent, it must be the redirect URI the code was issued for. */
function checkRedirectUri(grant: CodeGrant, parameters: Parameters) {
  const redirectUri = optional(parameters, 'redirect_uri')
  if (redirectUri === undefined) return
  const checked = normaliseRedirectUri(redirectUri)
  if (!checked.ok || !sameRedirectUri(grant.r, checked.url)) throw invalidGrant('redirect_uri does not match the authorization request')
}

/** RFC 7636 §4.6. */
function checkPkce(grant: CodeGrant, parameters: Parameters) {
  const verifier = required(parameters, 'code_verifier')
  if (!isValidVerifier(verifier)) throw invalidRequest('code_verifier must be 43 to 128 unreserved characters')
  if (!verifierMatches(verifier, grant.cc)) throw invalidGrant('code_verifier does not match the code_challenge')
}

async function useCodeOnce(gateway: Gateway, grant: CodeGrant) {
  // The mark outlives the code, so a replay is refused for as long as the code could be presented.
  if (!(await gateway.store.useOnce(`code:${grant.j}`, gateway.config.lifetimes.codeSeconds + 60))) {
    throw invalidGrant('the authorization code was already used')
  }
}

async function refreshTokenGrant(gateway: Gateway, client: RegisteredClient, parameters: Parameters): Promise<TokenSet> {
  if (!client.grant_types.includes('refresh_token')) throw new OAuthError(400, 'unauthorized_client', 'the client did not register the refresh_token grant')
  const grant = gateway.sealer.open<RefreshGrant>('refresh', required(parameters, 'refresh_token', 8192))
  if (!grant) throw invalidGrant('the refresh token is invalid')
  if (grant.c !== clientHandle(client.client_id)) throw invalidGrant('the refresh token was issued to another client')
  const scope = optional(parameters, 'scope')
  const tokens = await gateway.upstream.refreshGrant(grant.rt, scope ? { scope } : undefined)
  // An upstream that does not rotate answers without a refresh token: the client keeps the one it has.
  return bindRefreshToken(gateway, client, tokens, { sc: grant.sc, res: grant.res })
}

function bindRefreshToken(gateway: Gateway, client: RegisteredClient, tokens: TokenSet, origin: { sc?: string | undefined; res?: string | undefined }): TokenSet {
  if (typeof tokens.refresh_token !== 'string') return tokens
  const bound: RefreshGrant = { rt: tokens.refresh_token, c: clientHandle(client.client_id), sc: origin.sc, res: origin.res }
  return { ...tokens, refresh_token: gateway.sealer.seal('refresh', bound) }
}
