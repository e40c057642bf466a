/**
 * Step-up in front mode (MCP authorization, "Scope Challenge Handling"): the
 * MCP server's tool `save` needs the `profile` scope, and a token without it
 * gets 403 `insufficient_scope` naming every scope needed. Through the
 * gateway the challenge keeps the server's error, scope and description and
 * names the gateway's resource metadata; the MCP SDK client re-authorizes
 * with the union, the consent page asks for the new scope only, and the new
 * tokens carry the union and call the tool. `offline_access` is offered by
 * the gateway's own metadata only: the server's 401 asks for it, the client
 * never sees it there.
 */
import t from 'tap'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { CookieBrowser, consentForm, signInAndFollow } from '../support/browser.ts'
import { ConnectorProvider, mcpClient, textOf, transportFor } from '../support/mcp-client.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

const stack = await startStack({ front: true, mcp: { stepUp: { tool: 'save', scope: 'profile' }, challengeScope: 'openid offline_access' } })
t.teardown(() => stack.close())
const mcpUrl = stack.mcpUrl
const gatewayMetadata = `${stack.gatewayUrl}/.well-known/oauth-protected-resource/mcp`
const fromChatGpt = (url: URL) => url.origin === 'https://chatgpt.com'

const provider = new ConnectorProvider(CHATGPT_REDIRECT)
// One user, one browser: the consent cookie carries what they approved from one authorization to the next.
const browser = new CookieBrowser()

async function signIn(authorizationUrl: URL) {
  const result = await signInAndFollow(browser, authorizationUrl.href, stack.upstream.account, fromChatGpt)
  const code = result.redirect?.searchParams.get('code')
  if (!code) throw new Error(`no code: ${result.response?.status} ${result.body?.slice(0, 300)}`)
  await auth(provider, { serverUrl: mcpUrl, authorizationCode: code })
}

function callSave(accessToken: string) {
  return fetch(mcpUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'save', arguments: { text: 'x' } } }),
  })
}

t.test('the first sign-in asks for the 401\'s scopes, without offline_access', async (t) => {
  const bare = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(bare.headers.get('www-authenticate'), `Bearer scope="openid", resource_metadata="${gatewayMetadata}"`, 'the server asked for openid offline_access; the client is told openid')
  await bare.body?.cancel()
  await t.rejects(mcpClient().connect(transportFor(mcpUrl, provider)), { message: 'Unauthorized' })
  t.equal(provider.lastAuthorizationUrl?.searchParams.get('scope'), 'openid', 'the SDK asks for the challenge\'s scope')
  await signIn(provider.lastAuthorizationUrl!)
  t.equal(provider.saved?.scope, 'openid')
  t.ok(provider.saved?.refresh_token, 'refresh tokens come from the gateway\'s grant, not from a scope the resource asked for')
})

t.test('the tool that needs more: 403 insufficient_scope, as the server wrote it, naming the gateway', async (t) => {
  const client = mcpClient()
  await client.connect(transportFor(mcpUrl, provider))
  t.match(textOf(await client.callTool({ name: 'whoami', arguments: {} })), /^signed in as /, 'other tools work')
  await client.close()

  const refused = await callSave(provider.saved!.access_token)
  t.equal(refused.status, 403)
  t.equal(
    refused.headers.get('www-authenticate'),
    `Bearer error="insufficient_scope", scope="openid profile", error_description="The save tool needs the profile scope", resource_metadata="${gatewayMetadata}"`,
  )
  t.equal(refused.headers.get('access-control-expose-headers')?.toLowerCase().includes('www-authenticate'), true, 'readable by browser clients')
  await refused.body?.cancel()

  // This SDK version refreshes before re-authorizing, gets the same 403 and stops: a client must then sign in again.
  const sdk = mcpClient()
  await sdk.connect(transportFor(mcpUrl, provider))
  await t.rejects(sdk.callTool({ name: 'save', arguments: { text: 'x' } }), /403/, 'the SDK client sees the 403')
  await sdk.close()
})

t.test('re-authorizing with the union: the consent page asks for the new scope only; the tokens carry the union', async (t) => {
  provider.invalidateCredentials('tokens')
  t.equal(await auth(provider, { serverUrl: mcpUrl, scope: 'openid profile' }), 'REDIRECT')
  const url = provider.lastAuthorizationUrl!
  t.equal(url.searchParams.get('scope'), 'openid profile')

  const page = await browser.get(url)
  t.equal(page.status, 200, 'the consent page again')
  const html = await page.text()
  t.ok(consentForm(html), 'with its form')
  const asked = [...html.matchAll(/<li>[^<]*<code>([^<]+)<\/code><\/li>/g)].map((match) => match[1])
  t.same(asked, ['profile'], 'asking for the new scope only')
  t.match(html, /The app asks for more/)
  t.match(html, /You already allowed: <code>openid<\/code>/)

  await signIn(url)
  t.equal(provider.saved?.scope, 'openid profile', 'the token answer names the union')
  const client = mcpClient()
  await client.connect(transportFor(mcpUrl, provider))
  t.match(textOf(await client.callTool({ name: 'save', arguments: { text: 'draft' } })), /^saved draft for /, 'and the tool that needed it works')
  await client.close()
})

t.test('once approved, the union needs no page; a wider one asks again for what is new', async (t) => {
  provider.invalidateCredentials('tokens')
  await auth(provider, { serverUrl: mcpUrl, scope: 'openid profile' })
  const again = await browser.get(provider.lastAuthorizationUrl!)
  t.equal(again.status, 302, 'no consent page')
  t.equal(new URL(again.headers.get('location')!).origin, new URL(stack.upstream.issuer).origin, 'straight to the upstream')
  await again.body?.cancel()

  await auth(provider, { serverUrl: mcpUrl, scope: 'openid profile email' })
  const wider = await (await browser.get(provider.lastAuthorizationUrl!)).text()
  t.same([...wider.matchAll(/<li>[^<]*<code>([^<]+)<\/code><\/li>/g)].map((match) => match[1]), ['email'])
})

t.test('offline_access stays in the gateway\'s own metadata', async (t) => {
  const as = (await (await fetch(`${stack.gatewayUrl}/.well-known/oauth-authorization-server`)).json()) as { scopes_supported: string[] }
  t.ok(as.scopes_supported.includes('offline_access'), 'offered by the authorization server')
  const prm = (await (await fetch(gatewayMetadata)).json()) as { scopes_supported: string[] }
  t.notOk(prm.scopes_supported.includes('offline_access'), 'not by the protected resource')
})
