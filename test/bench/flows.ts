/**
 * Connector flows driven over plain HTTP, fast enough to run tens of
 * thousands: each worker is one browser that signs in once, at the upstream
 * and on the gateway's consent page, and then goes from /authorize to the
 * client's redirect in the few redirects a returning user sees.
 */
import { randomBytes } from 'node:crypto'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { basicAuth, pkcePair } from '../support/flow.ts'
import { gatewayCode, type RegisteredClient } from '../support/gateway-flow.ts'
import { CHATGPT_REDIRECT } from '../support/stack.ts'
import type { StartedUpstream } from './processes.ts'

export interface Code {
  code: string
  verifier: string
}

/** ChatGPT's registration request (see CLIENTS.md). */
export const CHATGPT_REGISTRATION = {
  client_name: 'ChatGPT',
  redirect_uris: [CHATGPT_REDIRECT],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
}

/** A gateway code for `client` (registered as ChatGPT), asked for as ChatGPT asks: scope and the MCP server as resource. */
export function chatGptCode(browser: CookieBrowser, gatewayUrl: string, client: RegisteredClient, account: StartedUpstream['account'], mcpResource: string): Promise<Code> {
  return gatewayCode(gatewayUrl, client, account, { browser, parameters: { scope: 'openid offline_access', resource: mcpResource } })
}

/** An upstream code for the gateway's own client, as the gateway's callback receives it, but with a verifier we hold. */
export async function upstreamCode(browser: CookieBrowser, upstream: StartedUpstream, callbackUrl: string): Promise<Code> {
  const { verifier, challenge } = pkcePair()
  const url = new URL(`${upstream.issuer}/auth`)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: upstream.clientId,
    redirect_uri: callbackUrl,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    scope: 'openid offline_access',
  }).toString()
  const result = await signInAndFollow(browser, url.href, upstream.account, (next) => next.href.startsWith(callbackUrl))
  const code = result.redirect?.searchParams.get('code')
  if (!code) throw new Error(`no upstream code came back: ${result.response?.status} ${result.body?.slice(0, 300)}`)
  return { code, verifier }
}

/** The form ChatGPT posts to the gateway's token endpoint. */
export function gatewayTokenBody(client: RegisteredClient, code: Code): string {
  return new URLSearchParams({ grant_type: 'authorization_code', code: code.code, code_verifier: code.verifier, redirect_uri: CHATGPT_REDIRECT, client_id: client.client_id }).toString()
}

/** The form the gateway posts to the upstream's token endpoint for the same exchange (with basicAuth of its client). */
export function upstreamTokenBody(code: Code, callbackUrl: string): string {
  return new URLSearchParams({ grant_type: 'authorization_code', code: code.code, redirect_uri: callbackUrl, code_verifier: code.verifier }).toString()
}

export function upstreamAuthorization(upstream: StartedUpstream): string {
  return basicAuth(upstream.clientId, upstream.clientSecret)
}

/** Runs `task` `count` times on `workers` browsers at once; each worker's browser is passed to its tasks. */
export async function inParallel<T>(count: number, workers: number, task: (browser: CookieBrowser, index: number) => Promise<T>, progress?: (done: number) => void): Promise<T[]> {
  const results: T[] = new Array(count)
  let next = 0
  let done = 0
  await Promise.all(
    Array.from({ length: Math.min(workers, count) }, async () => {
      const browser = new CookieBrowser()
      while (next < count) {
        const index = next++
        results[index] = await task(browser, index)
        if (++done % 1000 === 0) progress?.(done)
      }
    }),
  )
  return results
}
