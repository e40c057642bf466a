/**
 * The only module that talks to the upstream OAuth server (my.neonpanel.com):
 * one openid-client Configuration, one undici Agent, every request bounded in
 * time and size (fetch.ts), and verb-noun functions for each call. Every
 * failure leaves through translateUpstreamError, and what the upstream
 * answered is logged.
 */
import type { FastifyBaseLogger } from 'fastify'
import * as oidc from 'openid-client'
import { Agent } from 'undici'
import type { Config } from '../config.ts'
import { isLoopbackHost } from '../redirect-uri.ts'
import { translateUpstreamError } from './errors.ts'
import { boundedFetch, codesOf, recordingExchange, type Exchange } from './fetch.ts'

export interface TokenSet {
  access_token: string
  token_type: string
  expires_in?: number
  refresh_token?: string
  scope?: string
  [parameter: string]: unknown
}

export type UpstreamMetadata = Readonly<oidc.ServerMetadata>

export interface Upstream {
  /** The upstream's metadata, loaded once; rejects with an OAuthError while it cannot be loaded. */
  metadata(): Promise<UpstreamMetadata>
  /** The upstream authorization URL the browser is sent to. */
  authorizationUrl(parameters: Record<string, string>): Promise<URL>
  exchangeCode(input: { code: string; iss?: string | undefined; codeVerifier: string; parameters?: Record<string, string> }): Promise<TokenSet>
  refreshGrant(refreshToken: string, parameters?: Record<string, string>): Promise<TokenSet>
  revokeToken(token: string, tokenTypeHint?: string): Promise<void>
  close(): Promise<void>
}

type UpstreamConfig = Config['upstream']

/** RFC 8414 §2: client_secret_basic is the default when the upstream names no methods. */
function chooseClientAuth(upstream: UpstreamConfig, metadata: oidc.ServerMetadata): oidc.ClientAuth {
  const supported = metadata.token_endpoint_auth_methods_supported ?? ['client_secret_basic']
  const method =
    upstream.tokenEndpointAuthMethod !== 'auto'
      ? upstream.tokenEndpointAuthMethod
      : supported.includes('client_secret_basic') || !supported.includes('client_secret_post')
        ? 'client_secret_basic'
        : 'client_secret_post'
  return method === 'client_secret_basic' ? oidc.ClientSecretBasic(upstream.clientSecret) : oidc.ClientSecretPost(upstream.clientSecret)
}

function isInsecureAllowed(issuer: string) {
  const url = new URL(issuer)
  return url.protocol === 'http:' && isLoopbackHost(url.hostname)
}

/**
 * RFC 8414 first (issuers with a path use /.well-known/oauth-authorization-server/<path>),
 * then OpenID discovery (<issuer>/.well-known/openid-configuration).
 */
async function discoverMetadata(upstream: UpstreamConfig, options: oidc.DiscoveryRequestOptions): Promise<oidc.ServerMetadata> {
  const issuer = new URL(upstream.issuer)
  let firstError: unknown
  for (const algorithm of ['oauth2', 'oidc'] as const) {
    try {
      const discovered = await oidc.discovery(issuer, upstream.clientId, undefined, oidc.None(), { ...options, algorithm })
      return { ...discovered.serverMetadata() }
    } catch (err) {
      firstError ??= err
    }
  }
  throw firstError
}

type UpstreamLog = Pick<FastifyBaseLogger, 'info' | 'warn'>

const silent: UpstreamLog = { info() {}, warn() {} }

export function createUpstream(config: Config, callbackUrl: string, log: UpstreamLog = silent): Upstream {
  const upstream = config.upstream
  // The Agent's timeouts are backstops; the deadline in boundedFetch is what bounds a request as a whole.
  const agent = new Agent({
    connect: { timeout: upstream.connectTimeoutMs },
    headersTimeout: upstream.timeoutMs,
    bodyTimeout: upstream.timeoutMs,
    connections: upstream.maxConnections,
  })
  const customFetch: oidc.CustomFetch = boundedFetch(agent, upstream)
  const execute = isInsecureAllowed(upstream.issuer) ? [oidc.allowInsecureRequests] : []

  /** Runs one upstream call; a failure is logged with what the upstream answered, then translated. */
  async function observed<T>(name: string, work: () => Promise<T>): Promise<T> {
    const exchange: Exchange = {}
    try {
      return await recordingExchange(exchange, work)
    } catch (err) {
      const translated = translateUpstreamError(err, exchange)
      const entry = { upstream: { call: name, ...exchange, codes: codesOf(err) }, status: translated.status, error: translated.error, reason: translated.message }
      if (translated.status >= 500) log.warn(entry, 'upstream call failed')
      else log.info(entry, 'upstream refused the call')
      throw translated
    }
  }

  async function load(): Promise<oidc.Configuration> {
    const metadata: oidc.ServerMetadata = upstream.endpoints
      ? { issuer: upstream.issuer, ...upstream.endpoints }
      : await observed('discovery', () => discoverMetadata(upstream, { [oidc.customFetch]: customFetch, execute, timeout: upstream.timeoutMs / 1000 }))
    const configuration = new oidc.Configuration(metadata, upstream.clientId, { client_secret: upstream.clientSecret }, chooseClientAuth(upstream, metadata))
    configuration[oidc.customFetch] = customFetch
    configuration.timeout = upstream.timeoutMs / 1000
    for (const apply of execute) apply(configuration)
    return configuration
  }

  let loading: Promise<oidc.Configuration> | undefined
  /** Discovery is cached once it succeeds and retried on the next call after a failure. */
  function configuration(): Promise<oidc.Configuration> {
    loading ??= load().catch((err) => {
      loading = undefined
      throw translateUpstreamError(err)
    })
    return loading
  }

  async function call<T>(name: string, work: (configuration: oidc.Configuration) => Promise<T>): Promise<T> {
    const configuration_ = await configuration()
    return observed(name, () => work(configuration_))
  }

  return {
    async metadata() {
      return (await configuration()).serverMetadata()
    },

    async authorizationUrl(parameters) {
      return oidc.buildAuthorizationUrl(await configuration(), { ...parameters, redirect_uri: callbackUrl })
    },

    exchangeCode({ code, iss, codeVerifier, parameters }) {
      // openid-client validates the authorization response it is given: rebuild it as it reached the callback.
      const response = new URL(callbackUrl)
      response.searchParams.set('code', code)
      if (iss !== undefined) response.searchParams.set('iss', iss)
      return call('token', async (configuration_) =>
        toTokenSet(await oidc.authorizationCodeGrant(configuration_, response, { pkceCodeVerifier: codeVerifier }, parameters)),
      )
    },

    refreshGrant(refreshToken, parameters) {
      return call('refresh', async (configuration_) => toTokenSet(await oidc.refreshTokenGrant(configuration_, refreshToken, parameters)))
    },

    revokeToken(token, tokenTypeHint) {
      return call('revocation', (configuration_) => oidc.tokenRevocation(configuration_, token, tokenTypeHint ? { token_type_hint: tokenTypeHint } : undefined))
    },

    async close() {
      await agent.close()
    },
  }
}

/**
 * The upstream's tokens, unchanged, minus the ID token: it carries the
 * upstream's issuer, which a client that discovered the gateway would reject,
 * and MCP clients need only the access and refresh tokens.
 */
function toTokenSet(response: oidc.TokenEndpointResponse): TokenSet {
  const { id_token: _idToken, ...rest } = response
  // openid-client lower-cases token_type; the upstream's value was case-insensitive (RFC 6749 §7.1).
  const tokenType = rest.token_type === 'bearer' ? 'Bearer' : rest.token_type
  return { ...rest, token_type: tokenType } as TokenSet
}
