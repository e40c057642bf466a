/**
 * The client's side of the OAuth flow against a running stack, done by hand
 * (no SDK) so that tests can bend any step: registration, a PKCE pair, the
 * browser through /authorize and the upstream sign-in, and token requests.
 */
import { createHash, randomBytes } from 'node:crypto'
import { CookieBrowser, signInAndFollow } from './browser.ts'
import { CHATGPT_REDIRECT, type Stack } from './stack.ts'

export interface RegisteredClient {
  client_id: string
  client_secret?: string
  redirect_uris: string[]
  token_endpoint_auth_method: string
  grant_types: string[]
  application_type?: string
}

export function postJson(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

/** Registers a client the way ChatGPT does; `metadata` overrides any field. */
export async function registerClient(stack: Stack, metadata: Record<string, unknown> = {}): Promise<RegisteredClient> {
  const response = await postJson(`${stack.gatewayUrl}/register`, {
    client_name: 'ChatGPT',
    redirect_uris: [CHATGPT_REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...metadata,
  })
  if (response.status !== 201) throw new Error(`registration failed: ${response.status} ${await response.text()}`)
  return (await response.json()) as RegisteredClient
}

/** RFC 7636 §4.1 and §4.2, computed here rather than with the gateway's own code. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url')
  return { verifier, challenge: createHash('sha256').update(verifier, 'ascii').digest('base64url') }
}

/** A complete, valid /authorize URL for the client; `parameters` override or add (an empty string removes one). */
export function authorizeUrl(stack: Stack, client: RegisteredClient, challenge: string, parameters: Record<string, string> = {}): URL {
  const url = new URL('/authorize', stack.gatewayUrl)
  const all: Record<string, string> = {
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0]!,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: `state-${randomBytes(6).toString('hex')}`,
    scope: 'openid offline_access',
    resource: stack.mcp.url,
    ...parameters,
  }
  for (const [name, value] of Object.entries(all)) if (value !== '') url.searchParams.set(name, value)
  return url
}

export interface ObtainedCode {
  code: string
  verifier: string
  state: string
  /** The redirect to the client, as the browser was sent to it. */
  redirect: URL
}

/** Drives a fresh browser from /authorize through consent and the upstream sign-in to the client's redirect URI. */
export async function obtainCode(stack: Stack, client: RegisteredClient, parameters: Record<string, string> = {}): Promise<ObtainedCode> {
  const { verifier, challenge } = pkcePair()
  const url = authorizeUrl(stack, client, challenge, parameters)
  const target = url.searchParams.get('redirect_uri')!
  const result = await signInAndFollow(new CookieBrowser(), url.href, stack.upstream.account, (next) => next.href.startsWith(target))
  const code = result.redirect?.searchParams.get('code')
  if (!result.redirect || !code) throw new Error(`no code reached the client: ${result.response?.status} ${result.body ?? result.redirect?.href}`)
  return { code, verifier, state: url.searchParams.get('state')!, redirect: result.redirect }
}

/** POSTs a form to the gateway's token (or any) endpoint; a URLSearchParams body may repeat a parameter. */
export function postForm(url: string, fields: Record<string, string> | URLSearchParams, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: fields instanceof URLSearchParams ? fields : new URLSearchParams(fields),
  })
}

/** RFC 6749 §2.3.1: id and secret form-encoded, then joined and base64-encoded. */
export function basicAuth(clientId: string, clientSecret: string): string {
  const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+')
  return `Basic ${Buffer.from(`${encode(clientId)}:${encode(clientSecret)}`).toString('base64')}`
}

export interface Tokens {
  access_token: string
  token_type: string
  refresh_token?: string
  expires_in?: number
}

/** A public client's code exchange, as sent; the answer is the caller's to judge. */
export function postCodeExchange(stack: Stack, client: RegisteredClient, obtained: ObtainedCode): Promise<Response> {
  return postForm(`${stack.gatewayUrl}/token`, {
    grant_type: 'authorization_code',
    code: obtained.code,
    code_verifier: obtained.verifier,
    redirect_uri: client.redirect_uris[0]!,
    client_id: client.client_id,
  })
}

/** A public client's code exchange that must succeed. */
export async function exchangeCode(stack: Stack, client: RegisteredClient, obtained: ObtainedCode): Promise<Tokens> {
  const response = await postCodeExchange(stack, client, obtained)
  if (response.status !== 200) throw new Error(`code exchange failed: ${response.status} ${await response.text()}`)
  return (await response.json()) as Tokens
}
