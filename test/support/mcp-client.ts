/**
 * The official MCP SDK client, playing a connector such as ChatGPT's: an
 * OAuthClientProvider that keeps everything in memory and hands the
 * authorization URL to a test instead of a browser window.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { OAuthClientProvider, OAuthDiscoveryState } from '@modelcontextprotocol/sdk/client/auth.js'
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js'

export class ConnectorProvider implements OAuthClientProvider {
  readonly redirectUrl: string
  readonly clientMetadata: OAuthClientMetadata
  client?: OAuthClientInformationMixed
  saved?: OAuthTokens
  verifier = ''
  lastAuthorizationUrl?: URL
  discovered?: OAuthDiscoveryState
  readonly #state = `state-${Math.random().toString(36).slice(2)}`

  constructor(redirectUrl: string, metadata: Partial<OAuthClientMetadata> = {}) {
    this.redirectUrl = redirectUrl
    this.clientMetadata = {
      client_name: 'ChatGPT',
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...metadata,
    }
  }

  state() {
    return this.#state
  }
  clientInformation() {
    return this.client
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.client = info
  }
  tokens() {
    return this.saved
  }
  saveTokens(tokens: OAuthTokens) {
    this.saved = tokens
  }
  redirectToAuthorization(url: URL) {
    this.lastAuthorizationUrl = url
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier
  }
  codeVerifier() {
    return this.verifier
  }
  /** What the SDK calls after invalid_client (scope 'all': register again) or invalid_grant ('tokens'), as real clients implement it. */
  invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery') {
    if (scope === 'all' || scope === 'client') this.client = undefined
    if (scope === 'all' || scope === 'tokens') this.saved = undefined
    if (scope === 'all' || scope === 'verifier') this.verifier = ''
    if (scope === 'all' || scope === 'discovery') this.discovered = undefined
  }
  /** Keeps what discovery found (the 401's resource_metadata), as a real connector does between steps. */
  saveDiscoveryState(state: OAuthDiscoveryState) {
    this.discovered = state
  }
  discoveryState() {
    return this.discovered
  }
}

export function mcpClient() {
  return new Client({ name: 'gateway-test-connector', version: '1.0.0' })
}

export function transportFor(url: string, provider: OAuthClientProvider) {
  return new StreamableHTTPClientTransport(new URL(url), { authProvider: provider })
}

/** The text of a tool result's first content item. */
export function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? []
  return content[0]?.text ?? ''
}
