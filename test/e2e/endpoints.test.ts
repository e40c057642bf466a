/**
 * End to end: the gateway's other endpoints over real HTTP. Metadata (RFC 8414,
 * RFC 9728) at every path MCP clients try, CORS for browser-based clients,
 * dynamic registration (RFC 7591) and its refusals, revocation (RFC 7009),
 * unknown paths, and liveness/readiness with the upstream up and down.
 */
import t from 'tap'
import { buildGateway } from '../../gateway/app.ts'
import { parseConfig } from '../../gateway/config/load.ts'
import { exchangeCode, obtainCode, postForm, postJson, registerClient } from '../support/flow.ts'
import { freePort } from '../support/ports.ts'
import { CHATGPT_REDIRECT, failsWith, gatewayFile, startStack, TEST_SECRET } from '../support/stack.ts'

const stack = await startStack()
t.teardown(() => stack.close())
const registerUrl = `${stack.gatewayUrl}/register`

t.test('authorization server metadata', async (t) => {
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server/mcp']) {
    t.test(path, async (t) => {
      const response = await fetch(`${stack.gatewayUrl}${path}`)
      t.equal(response.status, 200, 'status 200')
      t.match(response.headers.get('content-type'), /^application\/json/, 'JSON')
      const metadata = (await response.json()) as Record<string, unknown>
      t.equal(metadata.issuer, stack.gatewayUrl, 'issuer is exactly the gateway URL (RFC 8414 §3.3)')
      const endpoints = Object.entries(metadata).filter(([name]) => name.endsWith('_endpoint'))
      t.ok(endpoints.length >= 4, 'names its endpoints')
      for (const [name, value] of endpoints) {
        t.ok(typeof value === 'string' && value.startsWith(`${stack.gatewayUrl}/`), `${name} is on the gateway`)
      }
      t.equal(metadata.authorization_endpoint, `${stack.gatewayUrl}/authorize`)
      t.equal(metadata.token_endpoint, `${stack.gatewayUrl}/token`)
      t.equal(metadata.registration_endpoint, `${stack.gatewayUrl}/register`, 'registration endpoint')
      t.equal(metadata.revocation_endpoint, `${stack.gatewayUrl}/revoke`, 'revocation endpoint')
      t.same(metadata.code_challenge_methods_supported, ['S256'], 'S256 only')
      t.equal(metadata.authorization_response_iss_parameter_supported, true, 'RFC 9207')
      t.same(metadata.response_types_supported, ['code'])
      t.notOk(metadata.jwks_uri, 'no jwks_uri: the gateway issues no ID tokens')
    })
  }
})

t.test('protected resource metadata', async (t) => {
  for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
    t.test(path, async (t) => {
      const response = await fetch(`${stack.gatewayUrl}${path}`)
      t.equal(response.status, 200, 'status 200')
      t.match(response.headers.get('content-type'), /^application\/json/, 'JSON')
      const metadata = (await response.json()) as Record<string, unknown>
      t.equal(metadata.resource, stack.mcp.url, 'names the MCP server')
      t.same(metadata.authorization_servers, [stack.gatewayUrl], 'names the gateway')
      t.same(metadata.scopes_supported, ['openid', 'profile', 'email'], 'the scopes, without offline_access: the authorization server offers that (SEP-2207)')
    })
  }

  t.test('another resource path is 404 JSON', async (t) => {
    await failsWith(t, await fetch(`${stack.gatewayUrl}/.well-known/oauth-protected-resource/other`), 404, 'invalid_request')
  })
})

t.test('CORS', async (t) => {
  const origin = 'https://inspector.example'

  t.test('a preflight to /token is allowed without credentials', async (t) => {
    const response = await fetch(`${stack.gatewayUrl}/token`, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, mcp-protocol-version',
      },
    })
    t.equal(response.status, 204, 'status 204')
    t.equal(response.headers.get('access-control-allow-origin'), '*', 'any origin')
    const allowed = (response.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/)
    for (const header of ['authorization', 'content-type', 'mcp-protocol-version']) t.ok(allowed.includes(header), `allows ${header}`)
    t.match(response.headers.get('access-control-allow-methods'), /POST/, 'allows POST')
    t.equal(response.headers.get('access-control-allow-credentials'), null, 'no credentials')
  })

  t.test('metadata answers with Access-Control-Allow-Origin', async (t) => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/oauth-protected-resource/mcp']) {
      const response = await fetch(`${stack.gatewayUrl}${path}`, { headers: { origin, 'mcp-protocol-version': '2025-06-18' } })
      t.equal(response.status, 200)
      t.equal(response.headers.get('access-control-allow-origin'), '*', `${path} allows any origin`)
      t.equal(response.headers.get('access-control-allow-credentials'), null, 'no credentials')
    }
  })

  t.test('token errors are readable from a page, challenge included', async (t) => {
    const response = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'authorization_code', client_id: 'unknown' }, { origin })
    t.equal(response.headers.get('access-control-allow-origin'), '*')
    t.match(response.headers.get('access-control-expose-headers'), /WWW-Authenticate/i, 'exposes WWW-Authenticate')
    await failsWith(t, response, 401, 'invalid_client')
  })

  t.test('a path that does not exist is a 404 a page can read, with its request id', async (t) => {
    const response = await fetch(`${stack.gatewayUrl}/.well-known/nothing-here`, { headers: { origin } })
    t.equal(response.headers.get('access-control-allow-origin'), '*')
    t.match(response.headers.get('x-request-id'), /\S{8,}/, 'the id its log line carries')
    await failsWith(t, response, 404, 'invalid_request')
  })

  t.test('/callback carries no CORS header', async (t) => {
    const response = await fetch(`${stack.gatewayUrl}/callback?state=x`, { headers: { origin }, redirect: 'manual' })
    t.equal(response.status, 400)
    t.equal(response.headers.get('access-control-allow-origin'), null, 'no Access-Control-Allow-Origin')
    await response.body?.cancel()
  })

  t.test('/authorize carries no CORS header', async (t) => {
    const client = await registerClient(stack)
    const response = await fetch(`${stack.gatewayUrl}/authorize?client_id=${encodeURIComponent(client.client_id)}`, { headers: { origin }, redirect: 'manual' })
    t.equal(response.headers.get('access-control-allow-origin'), null, 'no Access-Control-Allow-Origin')
    await response.body?.cancel()
  })
})

t.test('registration', async (t) => {
  t.test('a good body is 201 with what was registered', async (t) => {
    const response = await postJson(registerUrl, {
      client_name: 'ChatGPT',
      redirect_uris: ['HTTPS://ChatGPT.com:443/connector/oauth/AbC', 'http://127.0.0.1:33418/callback'],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      unknown_extension: 'ignored',
    })
    t.equal(response.status, 201, 'status 201')
    t.equal(response.headers.get('cache-control'), 'no-store', 'no-store')
    const client = (await response.json()) as Record<string, unknown>
    t.type(client.client_id, 'string', 'a client_id')
    t.same(client.redirect_uris, ['https://chatgpt.com/connector/oauth/AbC', 'http://127.0.0.1:33418/callback'], 'redirect URIs, normalised')
    t.equal(client.token_endpoint_auth_method, 'none')
    t.same(client.grant_types, ['authorization_code', 'refresh_token'])
    t.equal(client.client_name, 'ChatGPT')
    t.notOk('client_secret' in client, 'a public client gets no secret')
    t.notOk('unknown_extension' in client, 'unknown metadata is not echoed')
  })

  for (const method of ['client_secret_basic', 'client_secret_post']) {
    t.test(`${method} gets a secret`, async (t) => {
      const response = await postJson(registerUrl, { redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: method })
      t.equal(response.status, 201)
      const client = (await response.json()) as Record<string, unknown>
      t.equal(client.token_endpoint_auth_method, method)
      t.type(client.client_secret, 'string', 'a client_secret')
      t.ok((client.client_secret as string).length >= 32, 'a long secret')
      t.equal(client.client_secret_expires_at, 0, 'that does not expire')
    })
  }

  t.test('no token_endpoint_auth_method means client_secret_basic (RFC 7591 §2)', async (t) => {
    const response = await postJson(registerUrl, { redirect_uris: [CHATGPT_REDIRECT] })
    const client = (await response.json()) as Record<string, unknown>
    t.equal(response.status, 201)
    t.equal(client.token_endpoint_auth_method, 'client_secret_basic')
    t.type(client.client_secret, 'string')
  })

  const badRedirects: Array<[name: string, uris: unknown]> = [
    ['not on the allowlist', ['https://evil.example/cb']],
    ['a look-alike host', ['https://chatgpt.com.evil.com/connector/oauth/x']],
    ['http on a non-loopback host', ['http://chatgpt.com/connector/oauth/x']],
    ['a fragment', [`${CHATGPT_REDIRECT}#fragment`]],
    ['userinfo', ['https://user:pass@chatgpt.com/connector/oauth/x']],
    ['a dot segment', ['https://chatgpt.com/connector/oauth/../../evil']],
    ['javascript:', ['javascript:alert(1)//chatgpt.com/connector/oauth/x']],
    ['one good, one bad', [CHATGPT_REDIRECT, 'https://evil.example/cb']],
    ['an empty list', []],
    ['a string instead of a list', CHATGPT_REDIRECT],
  ]
  for (const [name, uris] of badRedirects) {
    t.test(`a redirect URI with ${name} is invalid_redirect_uri`, async (t) => {
      await failsWith(t, await postJson(registerUrl, { redirect_uris: uris, token_endpoint_auth_method: 'none' }), 400, 'invalid_redirect_uri')
    })
  }

  t.test('missing redirect_uris is invalid_redirect_uri', async (t) => {
    await failsWith(t, await postJson(registerUrl, { client_name: 'x', token_endpoint_auth_method: 'none' }), 400, 'invalid_redirect_uri')
  })

  t.test('grant_types without authorization_code is invalid_client_metadata', async (t) => {
    for (const grantTypes of [['client_credentials'], ['refresh_token'], ['authorization_code', 'password']]) {
      await failsWith(t, await postJson(registerUrl, { redirect_uris: [CHATGPT_REDIRECT], grant_types: grantTypes }), 400, 'invalid_client_metadata')
    }
  })

  t.test('other bad metadata is invalid_client_metadata', async (t) => {
    const bodies = [
      { redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'private_key_jwt' },
      { redirect_uris: [CHATGPT_REDIRECT], response_types: ['token'] },
      { redirect_uris: [CHATGPT_REDIRECT], scope: 'openid admin' },
    ]
    for (const body of bodies) await failsWith(t, await postJson(registerUrl, body), 400, 'invalid_client_metadata')
  })

  t.test('a body that is not JSON is a 400 JSON error', async (t) => {
    const response = await fetch(registerUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"redirect_uris": [garbage' })
    await failsWith(t, response, 400, 'invalid_request')
  })

  t.test('a JSON array is invalid_client_metadata', async (t) => {
    await failsWith(t, await postJson(registerUrl, [{ redirect_uris: [CHATGPT_REDIRECT] }]), 400, 'invalid_client_metadata')
  })

  t.test('a JSON string or null is invalid_client_metadata', async (t) => {
    await failsWith(t, await postJson(registerUrl, 'redirect_uris'), 400, 'invalid_client_metadata')
    await failsWith(t, await postJson(registerUrl, null), 400, 'invalid_client_metadata')
  })
})

t.test('revocation', async (t) => {
  t.test('a revoked refresh token no longer refreshes', async (t) => {
    const client = await registerClient(stack)
    const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
    t.ok(tokens.refresh_token, 'a refresh token from a real sign-in')

    // Control: the token refreshes before it is revoked.
    const refreshed = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id })
    t.equal(refreshed.status, 200, 'it refreshes')
    const rotated = ((await refreshed.json()) as { refresh_token?: string }).refresh_token
    t.ok(rotated, 'and rotates')

    const revoked = await postForm(`${stack.gatewayUrl}/revoke`, { token: rotated!, token_type_hint: 'refresh_token', client_id: client.client_id })
    t.equal(revoked.status, 200, 'revocation answers 200')
    t.equal(revoked.headers.get('cache-control'), 'no-store')

    const after = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: rotated!, client_id: client.client_id })
    await failsWith(t, after, 400, 'invalid_grant')
  })

  t.test('a refresh token is not revoked by another client (RFC 7009 §2.1)', async (t) => {
    const owner = await registerClient(stack)
    const other = await registerClient(stack)
    const tokens = await exchangeCode(stack, owner, await obtainCode(stack, owner))
    const response = await postForm(`${stack.gatewayUrl}/revoke`, { token: tokens.refresh_token!, client_id: other.client_id })
    t.equal(response.status, 200, 'the other client is not told')
    const refreshed = await postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: owner.client_id })
    t.equal(refreshed.status, 200, 'the owner still refreshes')
  })

  t.test('a revoked access token is refused by the MCP server', async (t) => {
    const client = await registerClient(stack)
    const tokens = await exchangeCode(stack, client, await obtainCode(stack, client))
    const call = () =>
      fetch(stack.mcp.url, {
        method: 'POST',
        headers: { authorization: `Bearer ${tokens.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
      })
    const before = await call()
    t.equal(before.status, 200, 'accepted before revocation')
    await before.body?.cancel()
    const revoked = await postForm(`${stack.gatewayUrl}/revoke`, { token: tokens.access_token, token_type_hint: 'access_token', client_id: client.client_id })
    t.equal(revoked.status, 200, 'revocation answers 200')
    const after = await call()
    t.equal(after.status, 401, 'refused after revocation')
    await after.body?.cancel()
  })

  t.test('an unknown token answers 200 (RFC 7009 §2.2)', async (t) => {
    const client = await registerClient(stack)
    const response = await postForm(`${stack.gatewayUrl}/revoke`, { token: 'never-issued', client_id: client.client_id })
    t.equal(response.status, 200)
  })

  t.test('an unknown client is 401 invalid_client', async (t) => {
    const response = await postForm(`${stack.gatewayUrl}/revoke`, { token: 'anything', client_id: 'unknown-client' })
    const challenge = response.headers.get('www-authenticate')
    await failsWith(t, response, 401, 'invalid_client')
    t.ok(challenge, 'with a WWW-Authenticate challenge')
  })

  t.test('a missing token is invalid_request', async (t) => {
    const client = await registerClient(stack)
    await failsWith(t, await postForm(`${stack.gatewayUrl}/revoke`, { client_id: client.client_id }), 400, 'invalid_request')
  })
})

t.test('an unknown path is 404 JSON', async (t) => {
  const body = await failsWith(t, await fetch(`${stack.gatewayUrl}/no/such/endpoint?code=secret`), 404, 'invalid_request')
  t.notMatch(body.error_description, /secret/, 'the query is not echoed')
  await failsWith(t, await fetch(`${stack.gatewayUrl}/token`), 404, 'invalid_request')
})

t.test('health', async (t) => {
  t.test('/healthz and /readyz with the upstream up', async (t) => {
    const live = await fetch(`${stack.gatewayUrl}/healthz`)
    t.equal(live.status, 200, '/healthz 200')
    t.same(await live.json(), { status: 'ok' })
    const ready = await fetch(`${stack.gatewayUrl}/readyz`)
    t.equal(ready.status, 200, '/readyz 200')
    t.same(await ready.json(), { status: 'ready' })
  })

  t.test('a gateway whose upstream is not listening', async (t) => {
    const deadIssuer = `http://127.0.0.1:${await freePort()}`
    const config = parseConfig(gatewayFile('http://127.0.0.1:1', deadIssuer, stack.mcp.url), {
      GATEWAY_SECRET: TEST_SECRET,
      UPSTREAM_CLIENT_SECRET: stack.upstream.clientSecret,
    })
    const dead = await buildGateway({ config })
    t.teardown(() => dead.close())

    const live = await dead.inject({ method: 'GET', url: '/healthz' })
    t.equal(live.statusCode, 200, 'still alive')

    const started = Date.now()
    const ready = await dead.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 503, '/readyz 503')
    t.equal(ready.json().status, 'unavailable')
    t.equal(ready.headers['cache-control'], 'no-store')
    t.ok(Date.now() - started < 5000, 'answered within 5 s')

    // /authorize, once the client and redirect URI are trusted, tells the client instead of failing.
    const registered = await dead.inject({ method: 'POST', url: '/register', payload: { redirect_uris: [CHATGPT_REDIRECT], token_endpoint_auth_method: 'none' } })
    t.equal(registered.statusCode, 201)
    const query = new URLSearchParams({
      response_type: 'code',
      client_id: registered.json().client_id,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      state: 'down',
    })
    const authorize = await dead.inject({ method: 'GET', url: `/authorize?${query}` })
    t.equal(authorize.statusCode, 302)
    const location = new URL(authorize.headers.location as string)
    t.equal(location.origin + location.pathname, CHATGPT_REDIRECT)
    t.equal(location.searchParams.get('error'), 'temporarily_unavailable')
    t.equal(location.searchParams.get('state'), 'down')
    t.equal(location.searchParams.get('iss'), 'http://127.0.0.1:1')
  })
})
