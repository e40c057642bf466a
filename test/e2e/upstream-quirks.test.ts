/**
 * End to end: the upstream's quirks, absorbed. Each case starts the real
 * oidc-provider stand-in with one quirk (test/support/upstream.ts), runs the
 * whole flow with the MCP SDK client through the gateway to tool calls before
 * and after a refresh, and checks what reached the upstream.
 */
import t from 'tap'
import { clientHandle } from '../../gateway/clients/registry.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import type { RefreshGrant } from '../../gateway/routes/token.ts'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { upstreamRefreshTokenOf } from '../support/grants.ts'
import { authorizeUrl, obtainCode, pkcePair, postForm, registerClient, type RegisteredClient } from '../support/flow.ts'
import { ConnectorProvider } from '../support/mcp-client.ts'
import { connectWithSdk, type Connection } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack, TEST_SECRET, type Stack, type StackOptions } from '../support/stack.ts'

type Asserts = Pick<typeof t, 'equal' | 'ok' | 'match' | 'teardown'>

const API = 'https://api.neonpanel.test'
const sealer = new Sealer([TEST_SECRET])

async function stackWith(t: Asserts, options: StackOptions): Promise<Stack> {
  const stack = await startStack(options)
  t.teardown(() => stack.close())
  return stack
}

/** The ChatGPT connector through the whole flow; a tool call works before and after a refresh. */
async function connects(t: Asserts, stack: Stack): Promise<Connection> {
  const connection = await connectWithSdk(stack, new ConnectorProvider(CHATGPT_REDIRECT))
  t.equal(connection.whoami, 'signed in as np-user-1001', 'a tool call with the first access token')
  t.equal(connection.whoamiAfterRefresh, 'signed in as np-user-1001', 'and with the refreshed one')
  return connection
}

function received(stack: Stack, path: string, grantType?: string) {
  return stack.upstream.requests.filter((request) => request.path === path && (grantType === undefined || request.params.grant_type === grantType))
}

/** A refresh token the gateway will open and pass on, whose upstream token the upstream does not know (revoked, say). */
function unknownUpstreamRefreshToken(client: RegisteredClient): string {
  return sealer.seal('refresh', { rt: 'an-upstream-token-it-never-issued', c: clientHandle(client.client_id) } satisfies RefreshGrant)
}

function withUpstream(upstream: Record<string, unknown>) {
  return (file: Record<string, any>) => ({ ...file, upstream: { ...file.upstream, ...upstream } })
}

t.test('resource (RFC 8707)', async (t) => {
  t.test('drop, the default: an upstream that rejects every resource never sees one', async (t) => {
    const stack = await stackWith(t, {})
    const connection = await connects(t, stack)
    t.equal(connection.authorizationUrl.searchParams.get('resource'), stack.mcp.url, 'the client did send resource')
    for (const request of [...received(stack, '/auth'), ...received(stack, '/token')]) {
      t.equal(request.params.resource, undefined, `no resource on ${request.path} ${request.params.grant_type ?? ''}`)
    }
  })

  t.test('forward to that upstream: the client gets server_error, the log names invalid_target', async (t) => {
    const stack = await stackWith(t, { config: withUpstream({ resource: 'forward' }) })
    const client = await registerClient(stack)
    const url = authorizeUrl(stack, client, pkcePair().challenge)
    const result = await signInAndFollow(new CookieBrowser(), url.href, stack.upstream.account, (next) => next.origin === 'https://chatgpt.com')
    t.equal(result.redirect?.searchParams.get('error'), 'server_error')
    t.match(result.redirect?.searchParams.get('error_description'), /invalid_target/, 'the description names the upstream\'s answer')
  })

  t.test('forward to an upstream that knows the MCP server: sent on authorize, code exchange and refresh', async (t) => {
    const stack = await stackWith(t, { config: withUpstream({ resource: 'forward' }), upstream: { resources: (resource) => resource.endsWith('/mcp') } })
    await connects(t, stack)
    t.equal(received(stack, '/auth').at(-1)?.params.resource, stack.mcp.url, 'authorize')
    t.equal(received(stack, '/token', 'authorization_code').at(-1)?.params.resource, stack.mcp.url, 'code exchange')
    t.equal(received(stack, '/token', 'refresh_token').at(-1)?.params.resource, stack.mcp.url, 'refresh, kept through it')
  })

  t.test('map: the upstream gets its own name for the resource', async (t) => {
    const stack = await stackWith(t, { config: withUpstream({ resource: { mode: 'map', value: API } }), upstream: { resources: [API] } })
    await connects(t, stack)
    for (const request of [...received(stack, '/auth'), ...received(stack, '/token')]) {
      t.equal(request.params.resource, API, `resource=${API} on ${request.path} ${request.params.grant_type ?? ''}`)
    }
  })

  t.test('audience: sent as an audience parameter, resource dropped', async (t) => {
    const stack = await stackWith(t, { config: withUpstream({ resource: { mode: 'audience', value: API } }) })
    await connects(t, stack)
    for (const request of [...received(stack, '/auth'), ...received(stack, '/token')]) {
      t.equal(request.params.audience, API, `audience on ${request.path} ${request.params.grant_type ?? ''}`)
      t.equal(request.params.resource, undefined, 'and no resource')
    }
  })

  t.test('a resource on the token request must name the MCP server as well', async (t) => {
    const stack = await stackWith(t, {})
    const client = await registerClient(stack)
    const { code, verifier } = await obtainCode(stack, client)
    const fields = { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: CHATGPT_REDIRECT, client_id: client.client_id }
    const wrong = await failsWith(t, await postForm(`${stack.gatewayUrl}/token`, { ...fields, resource: 'https://other.example/mcp' }), 400, 'invalid_target')
    t.match(wrong.error_description, /^resource: must name the protected MCP server/)
    // Refused before the code was spent; the MCP server's URL with a trailing slash is the same resource.
    const response = await postForm(`${stack.gatewayUrl}/token`, { ...fields, resource: `${stack.mcp.url}/` })
    t.equal(response.status, 200, 'the right resource is accepted')
    const tokens = (await response.json()) as { refresh_token: string }
    const refresh = { grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: client.client_id }
    await failsWith(t, await postForm(`${stack.gatewayUrl}/token`, { ...refresh, resource: 'https://other.example/mcp' }), 400, 'invalid_target')
  })
})

t.test('the token endpoint\'s client authentication', async (t) => {
  t.test('basic only, and its metadata says so: auto uses client_secret_basic', async (t) => {
    const stack = await stackWith(t, { upstream: { tokenAuthMethod: 'client_secret_basic', advertisedAuthMethods: ['client_secret_basic'] } })
    await connects(t, stack)
    t.same([...new Set(received(stack, '/token').map((request) => request.clientAuth))], ['basic'])
  })

  t.test('post only, and its metadata says so: auto uses client_secret_post', async (t) => {
    const stack = await stackWith(t, { upstream: { tokenAuthMethod: 'client_secret_post', advertisedAuthMethods: ['client_secret_post'] } })
    await connects(t, stack)
    t.same([...new Set(received(stack, '/token').map((request) => request.clientAuth))], ['post'])
  })

  t.test('post only, but its metadata lists basic too: auto fails with a clear 502, forcing client_secret_post works', async (t) => {
    const misleading = await stackWith(t, { upstream: { tokenAuthMethod: 'client_secret_post' } })
    const client = await registerClient(misleading)
    const { code, verifier } = await obtainCode(misleading, client)
    const response = await postForm(`${misleading.gatewayUrl}/token`, { grant_type: 'authorization_code', code, code_verifier: verifier, client_id: client.client_id })
    const body = await failsWith(t, response, 502, 'server_error')
    t.match(body.error_description, /refused the gateway's own token \(authorization_code\) request \(invalid_client/, 'names the upstream\'s answer, and that it is not the app\'s fault')

    const forced = await stackWith(t, { upstream: { tokenAuthMethod: 'client_secret_post' }, config: withUpstream({ tokenEndpointAuthMethod: 'client_secret_post' }) })
    await connects(t, forced)
  })
})

t.test('upstream errors that are not plain OAuth answers', async (t) => {
  async function refreshWithUnknownToken(stack: Stack) {
    const client = await registerClient(stack)
    return postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: unknownUpstreamRefreshToken(client), client_id: client.client_id })
  }

  t.test('control: a plain upstream\'s invalid_grant passes on as it is', async (t) => {
    const body = await failsWith(t, await refreshWithUnknownToken(await stackWith(t, {})), 400, 'invalid_grant')
    t.match(body.error_description, /refused the token \(refresh_token\) request: invalid_grant/)
  })

  t.test('an HTML error page becomes JSON 502 server_error naming the status and content type', async (t) => {
    const body = await failsWith(t, await refreshWithUnknownToken(await stackWith(t, { upstream: { htmlErrors: true } })), 502, 'server_error')
    t.match(body.error_description, /answered the token \(refresh_token\) request with HTTP 400 \(text\/html\) instead of an OAuth JSON answer/)
    t.notMatch(body.error_description, /<html|Something went wrong/i, 'the page itself is not passed on')
  })

  t.test('an HTML error page with status 500 too', async (t) => {
    const body = await failsWith(t, await refreshWithUnknownToken(await stackWith(t, { upstream: { htmlErrors: true, errorStatus: 500 } })), 502, 'server_error')
    t.match(body.error_description, /HTTP 500 \(text\/html\)/)
  })

  t.test('a JSON OAuth error sent with status 500 keeps its code', async (t) => {
    const body = await failsWith(t, await refreshWithUnknownToken(await stackWith(t, { upstream: { errorStatus: 500 } })), 400, 'invalid_grant')
    t.match(body.error_description, /invalid_grant/)
  })
})

t.test('issuers', async (t) => {
  t.test('an issuer with a path', async (t) => {
    const stack = await stackWith(t, { upstream: { issuerPath: '/oauth' } })
    t.match(stack.config.upstream.issuer, /\/oauth$/)
    await connects(t, stack)
  })

  t.test('the upstream writes its path issuer with a trailing slash, the config without', async (t) => {
    const stack = await stackWith(t, { upstream: { issuerPath: '/oauth', issuerTrailingSlash: true }, config: (file) => ({ ...file, upstream: { ...file.upstream, issuer: file.upstream.issuer.replace(/\/$/, '') } }) })
    t.match(stack.upstream.issuer, /\/oauth\/$/)
    t.match(stack.config.upstream.issuer, /\/oauth$/)
    await connects(t, stack)
  })

  t.test('the config writes the path issuer with a trailing slash, the upstream without', async (t) => {
    const stack = await stackWith(t, { upstream: { issuerPath: '/oauth' }, config: (file) => ({ ...file, upstream: { ...file.upstream, issuer: `${file.upstream.issuer}/` } }) })
    t.match(stack.config.upstream.issuer, /\/oauth\/$/)
    await connects(t, stack)
  })

  t.test('the upstream writes its bare origin with a trailing slash, the config without', async (t) => {
    const stack = await stackWith(t, { upstream: { issuerTrailingSlash: true }, config: (file) => ({ ...file, upstream: { ...file.upstream, issuer: file.upstream.issuer.replace(/\/$/, '') } }) })
    await connects(t, stack)
  })
})

t.test('an upstream without discovery', async (t) => {
  const endpoints = (file: Record<string, any>) => {
    const issuer = file.upstream.issuer.replace(/\/$/, '')
    return withUpstream({ endpoints: { authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token`, revocation_endpoint: `${issuer}/token/revocation` } })(file)
  }

  t.test('with its endpoints configured, the whole flow works', async (t) => {
    const stack = await stackWith(t, { upstream: { discovery: false }, config: endpoints })
    t.equal((await fetch(`${stack.upstream.issuer}/.well-known/openid-configuration`)).status, 404, 'the upstream has no discovery')
    t.equal((await fetch(`${stack.gatewayUrl}/readyz`)).status, 200, 'the gateway is ready without it')
    const connection = await connects(t, stack)
    const revoked = await postForm(`${stack.gatewayUrl}/revoke`, { token: connection.refreshed.refresh_token!, client_id: (await registerClient(stack)).client_id })
    t.equal(revoked.status, 200, 'revocation answers too')
  })

  t.test('with an issuer the upstream spells with a trailing slash, written the same way', async (t) => {
    const stack = await stackWith(t, { upstream: { discovery: false, issuerPath: '/oauth', issuerTrailingSlash: true }, config: endpoints })
    t.match(stack.config.upstream.issuer, /\/oauth\/$/)
    await connects(t, stack)
  })

  t.test('without endpoints: not ready, and /authorize sends the client server_error naming discovery', async (t) => {
    const stack = await stackWith(t, { upstream: { discovery: false } })
    t.equal((await fetch(`${stack.gatewayUrl}/readyz`)).status, 503, 'not ready')
    const client = await registerClient(stack)
    const response = await fetch(authorizeUrl(stack, client, pkcePair().challenge), { redirect: 'manual' })
    t.equal(response.status, 302, 'back to the client')
    const location = new URL(response.headers.get('location')!)
    t.equal(location.searchParams.get('error'), 'server_error')
    t.match(location.searchParams.get('error_description'), /discovery request with HTTP 404/)
  })
})

t.test('expires_in sent as a string arrives as a number', async (t) => {
  const stack = await stackWith(t, { upstream: { stringExpiresIn: true } })
  const connection = await connects(t, stack)
  t.type(connection.tokens.expires_in, 'number', 'after the code exchange')
  t.type(connection.refreshed.expires_in, 'number', 'after the refresh')
  // The control: the upstream itself does answer with a string.
  const upstreamToken = await upstreamRefreshTokenOf(stack.gateway, connection.refreshed.refresh_token!)
  const raw = await fetch(`${stack.upstream.issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${btoa(`${stack.upstream.clientId}:${stack.upstream.clientSecret}`)}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: upstreamToken }),
  })
  t.type(((await raw.json()) as { expires_in: unknown }).expires_in, 'string', 'the upstream sends a string')
})

t.test('scopes renamed for the upstream, with offline_access added for refresh tokens', async (t) => {
  const stack = await stackWith(t, {
    upstream: { extraScopes: ['neonpanel.api'], refreshTokensNeedOfflineAccess: true },
    config: (file) => ({
      ...file,
      scopes: { supported: ['mcp', 'openid'], default: ['mcp'], upstream: { mcp: 'neonpanel.api' }, addOfflineAccess: true },
    }),
  })
  const connection = await connects(t, stack)
  t.equal(connection.authorizationUrl.searchParams.get('scope'), 'mcp openid', 'the client asks in its own names')
  t.same(received(stack, '/auth').at(-1)?.params.scope?.split(' ').sort(), ['neonpanel.api', 'offline_access', 'openid'], 'the upstream is asked in its names')
  t.ok(connection.tokens.refresh_token, 'a refresh token, thanks to offline_access')
  t.same(connection.tokens.scope?.split(' ').sort(), ['mcp', 'openid'], 'the token response names the client\'s scopes')

  const introspection = await fetch(`${stack.upstream.issuer}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${btoa(`${stack.upstream.introspection.clientId}:${stack.upstream.introspection.clientSecret}`)}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: connection.refreshed.access_token }),
  })
  t.match(((await introspection.json()) as { scope?: string }).scope, /\bneonpanel\.api\b/, 'the upstream access token carries the upstream scope')
})
