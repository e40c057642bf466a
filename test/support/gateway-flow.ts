/**
 * The steps of a connector's flow as plain HTTP calls, for tests that need a
 * real gateway code or refresh token without the whole MCP SDK client.
 */
import { createHash, randomBytes } from 'node:crypto'
import { CookieBrowser, signInAndFollow } from './browser.ts'

export interface RegisteredClient {
  client_id: string
  client_secret?: string
  redirect_uris: string[]
  token_endpoint_auth_method: string
}

/** RFC 7591 registration at the gateway. */
export async function registerClient(gatewayUrl: string, metadata: Record<string, unknown>): Promise<RegisteredClient> {
  const response = await fetch(`${gatewayUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token_endpoint_auth_method: 'none', ...metadata }),
  })
  if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${await response.text()}`)
  return (await response.json()) as RegisteredClient
}

/** RFC 7636 S256. */
export function challengeOf(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url')
}

export function pkcePair() {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: challengeOf(verifier) }
}

/** The gateway's /authorize URL for `client`, with a fresh PKCE pair; `parameters` add to it (scope, resource). */
export function authorizationRequest(gatewayUrl: string, client: RegisteredClient, redirectUri = client.redirect_uris[0]!, parameters: Record<string, string> = {}) {
  const { verifier, challenge } = pkcePair()
  const url = new URL(`${gatewayUrl}/authorize`)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    ...parameters,
  }).toString()
  return { url, verifier, redirectUri }
}

/**
 * Signs in at the upstream through the gateway and returns the gateway code the client receives.
 * A `browser` that signed in and approved before goes straight through, as a returning user does.
 */
export async function gatewayCode(
  gatewayUrl: string,
  client: RegisteredClient,
  account: { username: string; password: string },
  options: { browser?: CookieBrowser; parameters?: Record<string, string> } = {},
) {
  const request = authorizationRequest(gatewayUrl, client, undefined, options.parameters)
  const target = new URL(request.redirectUri)
  const result = await signInAndFollow(options.browser ?? new CookieBrowser(), request.url.href, account, (url) => url.origin === target.origin && url.pathname === target.pathname)
  const code = result.redirect?.searchParams.get('code')
  if (!code) throw new Error(`no code came back: ${result.response?.status} ${result.body?.slice(0, 300)}`)
  return { code, verifier: request.verifier, redirectUri: request.redirectUri }
}

/** POST /token with a form, as a public client. */
export function tokenRequest(gatewayUrl: string, form: Record<string, string>, headers: Record<string, string> = {}) {
  return fetch(`${gatewayUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  })
}
