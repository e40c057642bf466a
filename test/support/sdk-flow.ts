/**
 * A whole connection as a real MCP client makes it, driven by the official
 * SDK: the MCP server's 401, discovery, registration, the browser through
 * the gateway and the upstream sign-in back to the client's redirect URI
 * (not fetched: it belongs to the client), the code exchange, a tool call,
 * a refresh and a second tool call.
 */
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import type { OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js'
import { CookieBrowser, signInAndFollow } from './browser.ts'
import { type ConnectorProvider, mcpClient, textOf, transportFor } from './mcp-client.ts'
import type { Stack } from './stack.ts'

export interface Connection {
  /** Where the browser was sent back to, with code, state and iss. */
  redirect: URL
  /** The authorization URL the SDK built, as the browser was sent to it. */
  authorizationUrl: URL
  tokens: OAuthTokens
  refreshed: OAuthTokens
  /** What the whoami tool answered before and after the refresh. */
  whoami: string
  whoamiAfterRefresh: string
}

/** The client's redirect URI, compared without query: origin (scheme, host, port) and path. */
export function isRedirectTo(redirectUrl: string) {
  const expected = new URL(redirectUrl)
  return (url: URL) => url.protocol === expected.protocol && url.host === expected.host && url.pathname === expected.pathname
}

export async function connectWithSdk(stack: Stack, provider: ConnectorProvider, options: { bendAuthorizationUrl?: (url: URL) => void } = {}): Promise<Connection> {
  const first = mcpClient()
  const refused = await first.connect(transportFor(stack.mcpUrl, provider)).then(
    () => undefined,
    (err: Error) => err,
  )
  if (!refused || !/Unauthorized/.test(refused.message)) throw new Error(`the MCP server did not ask for authorization: ${refused?.message}`)
  if (!provider.lastAuthorizationUrl) throw new Error('the SDK built no authorization URL')
  const authorizationUrl = new URL(provider.lastAuthorizationUrl)
  options.bendAuthorizationUrl?.(authorizationUrl)

  const result = await signInAndFollow(new CookieBrowser(), authorizationUrl.href, stack.upstream.account, isRedirectTo(provider.redirectUrl))
  const redirect = result.redirect
  if (!redirect) throw new Error(`the browser did not come back to the client: ${result.response?.status} ${result.body?.slice(0, 500)}`)
  const code = redirect.searchParams.get('code')
  if (!code) throw new Error(`no code came back: ${redirect.href}`)

  await auth(provider, { serverUrl: stack.mcpUrl, authorizationCode: code })
  const tokens = provider.saved!
  const whoami = await callWhoami(stack, provider)

  if ((await auth(provider, { serverUrl: stack.mcpUrl })) !== 'AUTHORIZED') throw new Error('the refresh did not authorize')
  const refreshed = provider.saved!
  const whoamiAfterRefresh = await callWhoami(stack, provider)
  return { redirect, authorizationUrl, tokens, refreshed, whoami, whoamiAfterRefresh }
}

/** The whoami tool, called with the provider's current tokens (at the gateway's /mcp in front mode). */
export async function callWhoami(stack: Stack, provider: ConnectorProvider): Promise<string> {
  const client = mcpClient()
  await client.connect(transportFor(stack.mcpUrl, provider))
  try {
    return textOf(await client.callTool({ name: 'whoami', arguments: {} }))
  } finally {
    await client.close()
  }
}
