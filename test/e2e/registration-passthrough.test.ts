/**
 * Registration passthrough (`registration.mode: upstream`) end to end: the
 * MCP SDK client registers at the gateway, which registers a client of its
 * own at the oidc-provider upstream (RFC 7591) with the gateway's callback as
 * redirect URI; sign-in, code exchange, the tool call and the refresh then go
 * through as that upstream client. Local mode, against the same upstream,
 * never calls the upstream's registration endpoint.
 */
import t, { type Test } from 'tap'
import { auth } from '@modelcontextprotocol/sdk/client/auth.js'
import { buildGateway } from '../../gateway/app.ts'
import { parseConfig } from '../../gateway/config/load.ts'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { ConnectorProvider, mcpClient, textOf, transportFor } from '../support/mcp-client.ts'
import { CHATGPT_REDIRECT, TEST_SECRET, failsWith, gatewayFile, startStack } from '../support/stack.ts'

const REGISTRATION_TOKEN = 'initial-access-token-for-tests'
const stack = await startStack({
  upstream: { registration: true },
  // The consent page is covered by the browser tests; here the redirect is trusted so /authorize goes straight upstream.
  config: (file) => ({ ...file, registration: { mode: 'upstream' }, consent: { trustedRedirectUris: ['https://chatgpt.com/connector/oauth/*'] } }),
})
t.teardown(() => stack.close())

interface UpstreamRegistration {
  client_id: string
  redirect_uris: string[]
  registration_access_token: string
  registration_client_uri: string
}

/** What the upstream registered, as it answered (oidc-provider's own event). */
function watchRegistrations(t: Test) {
  const seen: UpstreamRegistration[] = []
  const listener = (ctx: unknown) => void seen.push({ ...(ctx as { body: UpstreamRegistration }).body })
  stack.upstream.provider.on('registration_create.success', listener)
  t.teardown(() => void stack.upstream.provider.off('registration_create.success', listener))
  return seen
}

const upstreamRegistrations = () => stack.upstream.requestLines.filter((request) => request === 'POST /reg').length

async function introspect(token: string) {
  const { clientId, clientSecret } = stack.upstream.introspection
  const response = await fetch(`${stack.upstream.issuer}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  })
  return (await response.json()) as { active: boolean; client_id?: string }
}

function register(gatewayUrl: string, metadata: Record<string, unknown>) {
  return fetch(`${gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(metadata) })
}

t.test('a connector registered through to the upstream signs in, calls a tool and refreshes as its own upstream client', async (t) => {
  const registrations = watchRegistrations(t)
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)

  // 1. 401, discovery, registration: the gateway registers a client of its own at the upstream.
  await t.rejects(mcpClient().connect(transportFor(stack.mcpUrl, provider)), { message: 'Unauthorized' })
  t.equal(registrations.length, 1, 'one client registered at the upstream')
  const upstreamClient = registrations[0]!
  t.same(upstreamClient.redirect_uris, [`${stack.gatewayUrl}/callback`], 'its one redirect URI is the gateway callback')
  t.same((provider.client as { redirect_uris?: string[] }).redirect_uris, [CHATGPT_REDIRECT], 'the connector keeps its own redirect URI at the gateway')
  t.not(provider.client?.client_id, upstreamClient.client_id, 'the connector holds a gateway client id')
  t.notOk(provider.client?.client_id.includes(upstreamClient.client_id), 'the upstream client id is sealed, not readable, in it')

  // 2. The browser goes to the upstream as the upstream client, then back through the gateway.
  const browser = new CookieBrowser()
  const toUpstream = await browser.get(provider.lastAuthorizationUrl!)
  const upstreamAuthorization = new URL(toUpstream.headers.get('location')!)
  t.equal(upstreamAuthorization.searchParams.get('client_id'), upstreamClient.client_id, 'the upstream sees the registered client')
  t.equal(upstreamAuthorization.searchParams.get('redirect_uri'), `${stack.gatewayUrl}/callback`, 'and the gateway callback')
  const result = await signInAndFollow(browser, upstreamAuthorization.href, stack.upstream.account, (url) => url.origin === 'https://chatgpt.com')
  const redirect = result.redirect!
  t.equal(redirect.origin + redirect.pathname, CHATGPT_REDIRECT, 'back at the connector')
  t.equal(redirect.searchParams.get('iss'), stack.gatewayUrl)

  // 3. Code exchange as the upstream client; the unchanged MCP server accepts the token.
  await auth(provider, { serverUrl: stack.mcpUrl, authorizationCode: redirect.searchParams.get('code')! })
  const first = provider.saved!
  t.equal((await introspect(first.access_token)).client_id, upstreamClient.client_id, 'the access token was issued to the upstream client')
  const connected = mcpClient()
  await connected.connect(transportFor(stack.mcpUrl, provider))
  t.equal(textOf(await connected.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001')
  await connected.close()

  // 4. Refresh as the upstream client.
  t.equal(await auth(provider, { serverUrl: stack.mcpUrl }), 'AUTHORIZED')
  const refreshed = provider.saved!
  t.not(refreshed.access_token, first.access_token, 'a new access token')
  t.equal((await introspect(refreshed.access_token)).client_id, upstreamClient.client_id)
  const again = mcpClient()
  await again.connect(transportFor(stack.mcpUrl, provider))
  t.equal(textOf(await again.callTool({ name: 'echo', arguments: { text: 'after refresh' } })), 'after refresh')
  await again.close()

  // 5. Ops delete the client at the upstream (RFC 7592): the gateway answers 401 invalid_client, so the connector registers again.
  const deleted = await fetch(upstreamClient.registration_client_uri, { method: 'DELETE', headers: { authorization: `Bearer ${upstreamClient.registration_access_token}` } })
  t.equal(deleted.status, 204, 'deleted at the upstream')
  const stale = await fetch(`${stack.gatewayUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token!, client_id: provider.client!.client_id }),
  })
  const body = await failsWith(t, stale, 401, 'invalid_client')
  t.match(body.error_description, /register/, 'says to register again')
  t.match(stale.headers.get('www-authenticate'), /^Basic /)
})

t.test('a confidential client: its gateway secret works, the upstream secret never leaves the gateway', async (t) => {
  const registrations = watchRegistrations(t)
  const provider = new ConnectorProvider(CHATGPT_REDIRECT, { token_endpoint_auth_method: 'client_secret_post', client_name: 'Claude' })
  await t.rejects(mcpClient().connect(transportFor(stack.mcpUrl, provider)), { message: 'Unauthorized' })
  const upstreamClient = registrations[0]! as UpstreamRegistration & { client_secret: string; client_name: string }
  t.equal(upstreamClient.client_name, 'Claude', 'the upstream shows the client its name')
  t.ok(provider.client?.client_secret, 'a gateway secret')
  t.not(provider.client?.client_secret, upstreamClient.client_secret, 'not the upstream secret')

  const result = await signInAndFollow(new CookieBrowser(), provider.lastAuthorizationUrl!.href, stack.upstream.account, (url) => url.origin === 'https://chatgpt.com')
  await auth(provider, { serverUrl: stack.mcpUrl, authorizationCode: result.redirect!.searchParams.get('code')! })
  t.equal((await introspect(provider.saved!.access_token)).client_id, upstreamClient.client_id)
  const connected = mcpClient()
  await connected.connect(transportFor(stack.mcpUrl, provider))
  t.equal(textOf(await connected.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001')
  await connected.close()
})

t.test('the allowlist refuses a bad redirect URI before anything reaches the upstream', async (t) => {
  const before = upstreamRegistrations()
  for (const uri of ['https://evil.example/callback', 'https://chatgpt.com.evil.com/connector/oauth/x', 'https://chatgpt.com/connector/oauth/x/../../evil', 'http://chatgpt.com/connector/oauth/x']) {
    const body = await failsWith(t, await register(stack.gatewayUrl, { redirect_uris: [uri], token_endpoint_auth_method: 'none' }), 400, 'invalid_redirect_uri')
    t.match(body.error_description, /redirect_uris\[0\]/, `names the field for ${uri}`)
  }
  await failsWith(t, await register(stack.gatewayUrl, { redirect_uris: [CHATGPT_REDIRECT], grant_types: ['refresh_token'] }), 400, 'invalid_client_metadata')
  t.equal(upstreamRegistrations(), before, 'the upstream saw no registration')

  // Normalised before registration: scheme and host case, default port.
  const response = await register(stack.gatewayUrl, { redirect_uris: ['HTTPS://ChatGPT.com:443/connector/oauth/abc'], token_endpoint_auth_method: 'none' })
  t.equal(response.status, 201)
  t.same(((await response.json()) as { redirect_uris: string[] }).redirect_uris, ['https://chatgpt.com/connector/oauth/abc'])
  t.equal(upstreamRegistrations(), before + 1, 'a good registration reaches the upstream once')
})

/** A second gateway on the same upstream, driven with inject. */
async function gatewayWith(t: Test, change: (file: Record<string, any>) => Record<string, any>, env: Record<string, string> = {}) {
  const file = change(gatewayFile('http://127.0.0.1:1', stack.upstream.issuer, stack.mcp.url))
  const config = parseConfig(file, { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: stack.upstream.clientSecret, ...env })
  const app = await buildGateway({ config })
  t.teardown(() => app.close())
  return (metadata: Record<string, unknown>) => app.inject({ method: 'POST', url: '/register', payload: metadata })
}

t.test('local mode registers at the gateway only', async (t) => {
  const registerLocally = await gatewayWith(t, (file) => file)
  const before = upstreamRegistrations()
  const response = await registerLocally({ redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none' })
  t.equal(response.statusCode, 201)
  t.equal(upstreamRegistrations(), before, 'the upstream registration endpoint was not called')
})

t.test('the upstream refusing or lacking registration is a readable 502, never a client error', async (t) => {
  const protectedUpstream = await startStack({ upstream: { registration: { initialAccessToken: REGISTRATION_TOKEN } }, config: (file) => ({ ...file, registration: { mode: 'upstream' } }) })
  t.teardown(() => protectedUpstream.close())
  const refused = await register(protectedUpstream.gatewayUrl, { redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none' })
  const body = await failsWith(t, refused, 502, 'server_error')
  t.match(body.error_description, /UPSTREAM_REGISTRATION_TOKEN/, 'names the setting to check')

  const noEndpoint = await gatewayWith(t, (file) => ({
    ...file,
    registration: { mode: 'upstream' },
    upstream: { ...file.upstream, endpoints: { authorization_endpoint: `${stack.upstream.issuer}/auth`, token_endpoint: `${stack.upstream.issuer}/token` } },
  }))
  const missing = await noEndpoint({ redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none' })
  t.equal(missing.statusCode, 502)
  t.match(missing.json(), { error: 'server_error', error_description: /registration endpoint/ })
})

t.test('an initial access token opens the upstream registration', async (t) => {
  const protectedStack = await startStack({
    upstream: { registration: { initialAccessToken: REGISTRATION_TOKEN } },
    config: (file) => ({ ...file, registration: { mode: 'upstream' } }),
    env: { UPSTREAM_REGISTRATION_TOKEN: REGISTRATION_TOKEN },
  })
  t.teardown(() => protectedStack.close())
  const provider = new ConnectorProvider(CHATGPT_REDIRECT)
  await t.rejects(mcpClient().connect(transportFor(protectedStack.mcpUrl, provider)), { message: 'Unauthorized' })
  const result = await signInAndFollow(new CookieBrowser(), provider.lastAuthorizationUrl!.href, protectedStack.upstream.account, (url) => url.origin === 'https://chatgpt.com')
  await auth(provider, { serverUrl: protectedStack.mcpUrl, authorizationCode: result.redirect!.searchParams.get('code')! })
  const connected = mcpClient()
  await connected.connect(transportFor(protectedStack.mcpUrl, provider))
  t.equal(textOf(await connected.callTool({ name: 'whoami', arguments: {} })), 'signed in as np-user-1001')
  await connected.close()
})
