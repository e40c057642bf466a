/**
 * End to end: the official MCP SDK client plays ChatGPT's connector
 * (redirect https://chatgpt.com/connector/oauth/<id>) against the gateway in
 * front of the real oidc-provider upstream, and calls a tool on the SDK's MCP
 * server with the token. ChatGPT's redirect host is on the public internet, so
 * the test stops the browser at that redirect and reads the code from it.
 */
import t from 'tap'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { ConnectorProvider, mcpClient, textOf, transportFor } from '../support/mcp-client.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

const stack = await startStack()
t.teardown(() => stack.close())

t.test('ChatGPT connects, calls a tool, and refreshes', async (t) => {
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)

  // 1. The MCP server answers 401; the SDK discovers the gateway, registers and builds the authorization URL.
  const first = mcpClient()
  await t.rejects(first.connect(transportFor(stack.mcp.url, provider)), { message: 'Unauthorized' }, 'the MCP server asks for authorization')
  t.ok(provider.client?.client_id, 'registered with the gateway')
  const authorizationUrl = provider.lastAuthorizationUrl!
  t.equal(authorizationUrl.origin + authorizationUrl.pathname, `${stack.gatewayUrl}/authorize`, 'authorization starts at the gateway')
  t.equal(authorizationUrl.searchParams.get('resource'), stack.mcp.url, 'the SDK sends the RFC 8707 resource')

  // 2. The browser signs in at the upstream and comes back to ChatGPT through the gateway.
  const browser = new CookieBrowser()
  const result = await signInAndFollow(browser, authorizationUrl.href, stack.upstream.account, (url) => url.origin === 'https://chatgpt.com')
  const redirect = result.redirect!
  t.ok(redirect, 'the browser is sent back to ChatGPT')
  t.equal(redirect.origin + redirect.pathname, CHATGPT_REDIRECT)
  t.equal(redirect.searchParams.get('state'), provider.state(), 'the client state comes back')
  t.equal(redirect.searchParams.get('iss'), stack.gatewayUrl, 'iss is the gateway (RFC 9207), not the upstream')
  const code = redirect.searchParams.get('code')!
  t.ok(code)

  // 3. Code exchange through the gateway, then a tool call with NeonPanel's own token.
  await auth(provider, { serverUrl: stack.mcp.url, authorizationCode: code })
  const firstTokens = provider.saved!
  t.ok(firstTokens.access_token, 'an access token')
  t.ok(firstTokens.refresh_token, 'a refresh token')
  t.equal(firstTokens.token_type, 'Bearer')
  t.type(firstTokens.expires_in, 'number')
  t.notOk((firstTokens as Record<string, unknown>).id_token, 'no ID token carrying the upstream issuer')

  const connected = mcpClient()
  await connected.connect(transportFor(stack.mcp.url, provider))
  t.equal(textOf(await connected.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001')
  await connected.close()

  // 4. Refresh through the gateway: a new access token that the MCP server accepts.
  t.equal(await auth(provider, { serverUrl: stack.mcp.url }), 'AUTHORIZED')
  const refreshed = provider.saved!
  t.not(refreshed.access_token, firstTokens.access_token, 'a new access token')
  const again = mcpClient()
  await again.connect(transportFor(stack.mcp.url, provider))
  t.equal(textOf(await again.callTool({ name: 'echo', arguments: { text: 'after refresh' } })), 'after refresh')
  await again.close()
})

t.test('the access token is the upstream token, accepted by the unchanged MCP server', async (t) => {
  const provider = new ConnectorProvider(CHATGPT_REDIRECT, { token_endpoint_auth_method: 'client_secret_post' })
  await t.rejects(mcpClient().connect(transportFor(stack.mcp.url, provider)), { message: 'Unauthorized' }, 'the MCP server asks for authorization')
  t.ok(provider.client?.client_secret, 'a confidential client gets a secret')
  const result = await signInAndFollow(new CookieBrowser(), provider.lastAuthorizationUrl!.href, stack.upstream.account, (url) => url.origin === 'https://chatgpt.com')
  await auth(provider, { serverUrl: stack.mcp.url, authorizationCode: result.redirect!.searchParams.get('code')! })
  const introspection = await fetch(`${stack.upstream.issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${stack.upstream.introspection.clientId}:${stack.upstream.introspection.clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token: provider.saved!.access_token }),
  })
  const active = (await introspection.json()) as { active: boolean; client_id?: string }
  t.equal(active.active, true, 'the upstream knows the token')
  t.equal(active.client_id, stack.upstream.clientId, 'issued to the gateway upstream client')
})
