/**
 * The token endpoint. `authorization_code`: the gateway code is checked
 * (client, redirect URI, PKCE, resource) before the upstream code inside it
 * is exchanged, once; `refresh_token`: brokered to the upstream, once for
 * concurrent refreshes of one token. The upstream's access token reaches the
 * client unchanged; its refresh token is sealed and bound to the client, so
 * only that client can use it here.
 *
 * Retries are absorbed (single-flight.ts): the same code with the same
 * code_verifier from the same client (ChatGPT posts twice) gets the first
 * answer again for `lifetimes.codeRetrySeconds`, and refreshes of one refresh
 * token within `lifetimes.refreshRetrySeconds` share one upstream call, so an
 * upstream that rotates refresh tokens never sees the old one twice.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Gateway } from '../context.ts'
import { authenticateClient } from '../clients/authentication.ts'
import type { RegisteredClient } from '../clients/client.ts'
import { clientHandle } from '../clients/registry.ts'
import type { Config } from '../config/schema.ts'
import { OAuthError, invalidGrant, invalidRequest, invalidScope, step, unsupportedGrantType } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { presetOf } from '../policy/presets.ts'
import { optional, parametersOf, required, type Parameters } from '../http/params.ts'
import { isValidVerifier, verifierMatches } from '../policy/pkce.ts'
import { normaliseRedirectUri, sameRedirectUri } from '../policy/redirect-uri.ts'
import { checkResource } from '../policy/resource.ts'
import { grantedClientScope, scopeNames, upstreamScope } from '../policy/scopes.ts'
import { hashOf, singleFlight } from '../state/single-flight.ts'
import { slotTag } from '../state/store.ts'
import type { TokenSet } from '../upstream/index.ts'
import type { CodeGrant } from './callback.ts'

/** A refresh token as the client holds it: the upstream's, sealed and bound to the client. */
export interface RefreshGrant {
  /** The upstream refresh token. */
  rt: string
  c: string
  /** The scope granted, in the client's names. */
  sc?: string | undefined
  res?: string | undefined
  /** The flow it came from, for the log (log.ts). */
  f?: string | undefined
}

export async function token(app: FastifyInstance) {
  const gateway = app.gateway

  app.post('/token', { bodyLimit: gateway.config.server.bodyLimits.token, config: { limits: 'token' } }, async (request: FastifyRequest, reply: FastifyReply) => {
    const parameters = parametersOf(request.body)
    const client = await authenticateClient(request, parameters, gateway)
    const grantType = required(parameters, 'grant_type')
    let tokens: TokenSet
    if (grantType === 'authorization_code') tokens = await authorizationCodeGrant(gateway, request, client, parameters)
    else if (grantType === 'refresh_token') tokens = await refreshTokenGrant(gateway, request, client, parameters)
    else throw unsupportedGrantType(`grant_type: ${grantType.slice(0, 100)} is not supported (authorization_code, refresh_token)`)
    logStep(request, 'token', 'issued', 'tokens issued', { grant_type: grantType, refresh_token_issued: typeof tokens.refresh_token === 'string' })
    // RFC 6749 §5.1
    return reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache' }).send(tokens)
  })
}

async function authorizationCodeGrant(gateway: Gateway, request: FastifyRequest, client: RegisteredClient, parameters: Parameters): Promise<TokenSet> {
  const { code, grant } = openCode(gateway, client, parameters)
  request.flow = grant.f ?? null
  checkRedirectUri(grant, parameters)
  const verifier = checkPkce(grant, parameters)
  checkResourceParameter(gateway, parameters)
  return exchangeCodeOnce(gateway, client, grant, code, verifier)
}

const openCode = step('openCode', (gateway: Gateway, client: RegisteredClient, parameters: Parameters) => {
  const code = required(parameters, 'code', 8192)
  const grant = gateway.sealer.open<CodeGrant>('code', code)
  if (!grant) throw invalidGrant(`code: is not a code this gateway issued, or it expired (codes live ${gateway.config.lifetimes.codeSeconds} s)`)
  if (grant.c !== clientHandle(client.client_id)) throw invalidGrant('code: was issued to another client (RFC 6749 §4.1.3)')
  return { code, grant }
})

/** RFC 6749 §4.1.3: when sent, it must be the redirect URI the code was issued for. */
const checkRedirectUri = step('checkRedirectUri', (grant: CodeGrant, parameters: Parameters) => {
  const redirectUri = optional(parameters, 'redirect_uri')
  if (redirectUri === undefined) return
  const checked = normaliseRedirectUri(redirectUri)
  if (!checked.ok || !sameRedirectUri(grant.r, checked.url)) throw invalidGrant('redirect_uri: must be the redirect_uri of the authorization request (RFC 6749 §4.1.3)')
})

/** RFC 7636 §4.6. */
const checkPkce = step('checkPkce', (grant: CodeGrant, parameters: Parameters): string => {
  const verifier = required(parameters, 'code_verifier')
  if (!isValidVerifier(verifier)) throw invalidRequest('code_verifier: must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)')
  if (!verifierMatches(verifier, grant.cc)) throw invalidGrant('code_verifier: does not match the code_challenge of the authorization request (RFC 7636 §4.6)')
  return verifier
})

/** RFC 8707 §2.2: a resource on the token request, when sent, must name the MCP server too. */
const checkResourceParameter = step('checkResource', (gateway: Gateway, parameters: Parameters) => checkResource(gateway.config, optional(parameters, 'resource')))

/** How long an identical request waits for the running one: as long as that one may wait for the upstream. */
function waitMs(config: Config) {
  return config.upstream.timeoutMs + 1000
}

/**
 * The code is spent on the first exchange. A repeat with the same code,
 * verifier and client within the retry window gets the same answer; any other
 * reuse is invalid_grant and reaches neither the upstream nor what it issued.
 */
const exchangeCodeOnce = step('exchangeCodeOnce', async (gateway: Gateway, client: RegisteredClient, grant: CodeGrant, code: string, verifier: string) => {
  const { lifetimes } = gateway.config
  // The spent mark outlives the code, so a replay is refused for as long as the code could be presented.
  const spentSeconds = lifetimes.codeSeconds + 60
  const outcome = await singleFlight(
    gateway,
    {
      // One hash tag: the lock and the answer live on one shard of a cluster.
      lockKey: `code:${slotTag(grant.j)}`,
      lockSeconds: spentSeconds,
      doneSeconds: spentSeconds,
      durable: true,
      answerKey: `code-answer:${slotTag(grant.j)}:${hashOf(code)}`,
      answerSeconds: lifetimes.codeRetrySeconds,
      binding: `${grant.c}\n${verifier}`,
      waitMs: waitMs(gateway.config),
    },
    () => exchangeUpstreamCode(gateway, client, grant),
  )
  switch (outcome.kind) {
    case 'answered':
      return outcome.value
    case 'spent':
      throw invalidGrant(`code: was already used; only a repeat within ${lifetimes.codeRetrySeconds} s gets the first answer again (RFC 6749 §4.1.2)`)
    case 'mismatch':
      throw invalidGrant('code: was already used by a request with another code_verifier')
    case 'busy':
      throw invalidGrant('code: an earlier exchange of this code has not finished; start the authorization again')
  }
})

const exchangeUpstreamCode = step('exchangeUpstreamCode', async (gateway: Gateway, client: RegisteredClient, grant: CodeGrant) => {
  const tokens = await gateway.upstream.exchangeCode({ code: grant.uc, iss: grant.i, codeVerifier: grant.v, client: client.upstream })
  // Counted here, once per code: a retried exchange gets the same answer without completing another flow.
  gateway.metrics.flowCompleted(presetOf(grant.r))
  return clientTokens(gateway, client, tokens, grant.sc, grant)
})

async function refreshTokenGrant(gateway: Gateway, request: FastifyRequest, client: RegisteredClient, parameters: Parameters): Promise<TokenSet> {
  const grant = openRefreshToken(gateway, client, parameters)
  request.flow = grant.f ?? null
  checkResourceParameter(gateway, parameters)
  const scope = checkRefreshScope(gateway, grant, parameters)
  return refreshOnce(gateway, client, grant, scope)
}

const openRefreshToken = step('openRefreshToken', (gateway: Gateway, client: RegisteredClient, parameters: Parameters): RefreshGrant => {
  if (!client.grant_types.includes('refresh_token')) {
    throw new OAuthError(400, 'unauthorized_client', 'grant_type: refresh_token is not among the grant_types this client registered')
  }
  const grant = gateway.sealer.open<RefreshGrant>('refresh', required(parameters, 'refresh_token', 8192))
  if (!grant) throw invalidGrant('refresh_token: is not a refresh token this gateway issued (or it was sealed with a key the gateway no longer has)')
  if (grant.c !== clientHandle(client.client_id)) throw invalidGrant('refresh_token: was issued to another client (RFC 9700 §4.14)')
  return grant
})

/** RFC 6749 §6: a narrower scope may be asked for, never one that was not granted. */
const checkRefreshScope = step('checkRefreshScope', (gateway: Gateway, grant: RefreshGrant, parameters: Parameters): string | undefined => {
  const asked = scopeNames(optional(parameters, 'scope'))
  if (!asked.length) return undefined
  const allowed = grant.sc === undefined ? gateway.config.scopes.supported : scopeNames(grant.sc)
  const beyond = asked.filter((scope) => !allowed.includes(scope))
  if (beyond.length) throw invalidScope(`scope: ${beyond.join(' ')} was not granted with this refresh token (RFC 6749 §6)`)
  return [...new Set(asked)].join(' ')
})

/** Concurrent refreshes of one refresh token make one upstream call; the others get its answer. */
const refreshOnce = step('refreshOnce', async (gateway: Gateway, client: RegisteredClient, grant: RefreshGrant, scope: string | undefined) => {
  const { config } = gateway
  const key = hashOf(grant.rt)
  const outcome = await singleFlight(
    gateway,
    {
      lockKey: `refresh-lock:${slotTag(key)}`,
      lockSeconds: Math.ceil(waitMs(config) / 1000) + 1,
      answerKey: `refresh-answer:${slotTag(key)}`,
      answerSeconds: config.lifetimes.refreshRetrySeconds,
      binding: `${grant.c}\n${scope ?? ''}`,
      waitMs: waitMs(config),
    },
    () => refreshAtUpstream(gateway, client, grant, scope),
  )
  switch (outcome.kind) {
    case 'answered':
      return outcome.value
    case 'mismatch':
      throw invalidGrant('refresh_token: was used a moment ago with another scope; use the refresh token from that answer')
    case 'spent':
    case 'busy':
      throw new OAuthError(503, 'temporarily_unavailable', 'refresh_token: another refresh of this token is still running; try again in a moment')
  }
})

const refreshAtUpstream = step('refreshAtUpstream', async (gateway: Gateway, client: RegisteredClient, grant: RefreshGrant, scope: string | undefined) => {
  const parameters = scope === undefined ? undefined : { scope: upstreamScope(gateway.config.scopes, scope, { refreshTokens: true }) }
  const tokens = await gateway.upstream.refreshGrant(grant.rt, parameters, client.upstream)
  // An upstream that does not rotate answers without a refresh token: the client keeps the one it has.
  return clientTokens(gateway, client, tokens, scope ?? grant.sc, grant)
})

/**
 * The answer in the client's terms: the scope in its names, and the refresh
 * token sealed and bound to it, keeping the grant's scope and resource.
 */
function clientTokens(gateway: Gateway, client: RegisteredClient, tokens: TokenSet, askedScope: string | undefined, origin: { sc?: string | undefined; res?: string | undefined; f?: string | undefined }): TokenSet {
  const scope = askedScope === undefined ? tokens.scope : grantedClientScope(gateway.config.scopes, askedScope, tokens.scope)
  const answer: TokenSet = scope === undefined ? tokens : { ...tokens, scope }
  if (typeof tokens.refresh_token !== 'string') return answer
  const bound: RefreshGrant = { rt: tokens.refresh_token, c: clientHandle(client.client_id), sc: origin.sc, res: origin.res, f: origin.f }
  return { ...answer, refresh_token: gateway.sealer.seal('refresh', bound) }
}
