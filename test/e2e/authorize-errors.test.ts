/**
 * End to end: the browser endpoints' refusals. Until the client and its
 * redirect URI are known to be good, /authorize answers with an HTML page and
 * never redirects (RFC 6749 §4.1.2.1, RFC 9700 §4.11); after that, errors go
 * back to the client with its `state` and the gateway's `iss` (RFC 9207).
 * /callback refuses forged and replayed state, and passes the upstream's
 * access_denied on to the client.
 */
import t from 'tap'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { authorizeUrl, obtainCode, pkcePair, registerClient } from '../support/flow.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

// Ops trust ChatGPT's redirect here, so /authorize goes straight upstream and these
// tests see its own answers; the consent page has its own tests (test/browser/).
const stack = await startStack({ config: (file) => ({ ...file, consent: { trustedRedirectUris: ['https://chatgpt.com/connector/oauth/*'] } }) })
t.teardown(() => stack.close())

type Asserts = Pick<typeof t, 'equal' | 'ok' | 'match' | 'notMatch'>

function get(url: URL | string): Promise<Response> {
  return fetch(url, { redirect: 'manual' })
}

/** An HTML error page: 400, no redirect, not frameable, and its text says what went wrong. */
async function refusedWithPage(t: Asserts, response: Response, says: RegExp): Promise<string> {
  const body = await response.text()
  t.equal(response.status, 400, 'status 400')
  t.equal(response.headers.get('location'), null, 'no Location header')
  t.match(response.headers.get('content-type'), /^text\/html/, 'HTML')
  t.match(response.headers.get('content-security-policy'), /frame-ancestors 'none'/, "CSP frame-ancestors 'none'")
  t.equal(response.headers.get('x-frame-options'), 'DENY', 'X-Frame-Options DENY')
  t.equal(response.headers.get('cache-control'), 'no-store', 'no-store')
  t.match(body, says, 'the page names the problem')
  return body
}

/** RFC 6749 §4.1.2.1 with RFC 9207: a 302 to the client's redirect URI with error, state and iss. */
function redirectedWithError(t: Asserts, response: Response, redirectUri: string, error: string, state: string | null): URL {
  t.equal(response.status, 302, 'status 302')
  const location = new URL(response.headers.get('location') ?? 'about:blank')
  t.equal(location.origin + location.pathname, redirectUri, 'to the client redirect URI')
  t.equal(location.searchParams.get('error'), error, `error ${error}`)
  t.equal(location.searchParams.get('state'), state, 'the client state')
  t.equal(location.searchParams.get('iss'), stack.gatewayUrl, 'iss is the gateway')
  t.equal(location.searchParams.get('code'), null, 'no code')
  return location
}

t.test('before the redirect URI is trusted: an HTML page, never a redirect', async (t) => {
  const client = await registerClient(stack)
  const { challenge } = pkcePair()

  t.test('an unknown client_id', async (t) => {
    await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { client_id: 'not-a-client' })), /not registered|unknown client_id/)
  })

  t.test('a missing client_id', async (t) => {
    await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { client_id: '' })), /client_id is required/)
  })

  t.test('a redirect_uri the client did not register', async (t) => {
    for (const redirectUri of ['https://chatgpt.com/connector/oauth/someone-else', 'https://claude.ai/api/mcp/auth_callback', 'https://evil.example/cb']) {
      await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri })), /not one this app registered/)
    }
  })

  t.test('a look-alike host', async (t) => {
    const response = await get(authorizeUrl(stack, client, challenge, { redirect_uri: 'https://chatgpt.com.evil.com/connector/oauth/x' }))
    await refusedWithPage(t, response, /not one this app registered/)
  })

  t.test('a malformed redirect_uri', async (t) => {
    for (const redirectUri of [`${CHATGPT_REDIRECT}#frag`, 'https://user@chatgpt.com/connector/oauth/c0nn3ct0r', 'javascript:alert(1)//']) {
      await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri })), /redirect address/)
    }
  })

  t.test('no redirect_uri when the client registered two', async (t) => {
    const two = await registerClient(stack, { redirect_uris: [CHATGPT_REDIRECT, 'https://chatgpt.com/connector/oauth/second'] })
    await refusedWithPage(t, await get(authorizeUrl(stack, two, challenge, { redirect_uri: '' })), /redirect_uri is required/)
  })

  t.test('the same errors by POST are pages too', async (t) => {
    const url = authorizeUrl(stack, client, challenge, { client_id: 'not-a-client' })
    const response = await fetch(`${stack.gatewayUrl}/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: url.searchParams,
    })
    await refusedWithPage(t, response, /not registered|unknown client_id/)
  })
})

t.test('markup in parameters is never reflected unescaped', async (t) => {
  const client = await registerClient(stack)
  const { challenge } = pkcePair()
  const script = '<script>alert(1)</script>'

  const unknownClient = await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { client_id: script, state: script })), /not registered/)
  t.notMatch(unknownClient, /<script/i, 'no script element from client_id')

  // The gateway names a refused redirect URI on the page: it must come out escaped.
  const quoted = `https://chatgpt.com/connector/oauth/x'onmouseover='alert(1)'`
  const page = await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { redirect_uri: quoted })), /not one this app registered/)
  t.notMatch(page, /'onmouseover='/, 'no raw quote from redirect_uri')
  t.match(page, /&#39;onmouseover=&#39;/, 'the quote is escaped')

  const tagged = `https://chatgpt.com/connector/oauth/x"><img/src=x/onerror=alert(1)>`
  const tagPage = await refusedWithPage(t, await get(authorizeUrl(stack, client, challenge, { redirect_uri: tagged })), /not one this app registered/)
  t.notMatch(tagPage, /<img/i, 'no img element from redirect_uri')
})

t.test('after the redirect URI is trusted: errors go back to the client', async (t) => {
  const client = await registerClient(stack)
  const { challenge } = pkcePair()
  const cases: Array<[name: string, parameters: Record<string, string>, error: string]> = [
    ['a missing code_challenge', { code_challenge: '' }, 'invalid_request'],
    ['code_challenge_method=plain', { code_challenge_method: 'plain', code_challenge: 'a'.repeat(43) }, 'invalid_request'],
    ['no code_challenge_method', { code_challenge_method: '' }, 'invalid_request'],
    ['a code_challenge that is not a S256 digest', { code_challenge: 'too-short' }, 'invalid_request'],
    ['response_type=token', { response_type: 'token' }, 'unsupported_response_type'],
    ['a missing response_type', { response_type: '' }, 'invalid_request'],
    ['an unsupported scope', { scope: 'openid admin' }, 'invalid_scope'],
    ['a resource that is not the MCP server', { resource: 'https://other.example/mcp' }, 'invalid_target'],
    ['a resource on the MCP server origin but another path', { resource: new URL('/other', stack.mcp.url).href }, 'invalid_target'],
  ]
  for (const [name, parameters, error] of cases) {
    t.test(name, async (t) => {
      const state = `state-${name.length}`
      const response = await get(authorizeUrl(stack, client, challenge, { state, ...parameters }))
      redirectedWithError(t, response, CHATGPT_REDIRECT, error, state)
      t.equal(response.headers.get('cache-control'), 'no-store', 'no-store')
    })
  }

  t.test('without state, the error comes back without state', async (t) => {
    redirectedWithError(t, await get(authorizeUrl(stack, client, challenge, { state: '', response_type: 'token' })), CHATGPT_REDIRECT, 'unsupported_response_type', null)
  })

  t.test('a repeated parameter is invalid_request', async (t) => {
    const url = authorizeUrl(stack, client, challenge, { state: 'repeat' })
    url.searchParams.append('scope', 'email')
    redirectedWithError(t, await get(url), CHATGPT_REDIRECT, 'invalid_request', 'repeat')
  })
})

t.test('an empty scope= is accepted and the default scopes go upstream', async (t) => {
  const client = await registerClient(stack)
  const url = authorizeUrl(stack, client, pkcePair().challenge)
  url.searchParams.set('scope', '')
  const response = await get(url)
  t.equal(response.status, 302, 'status 302')
  const location = new URL(response.headers.get('location')!)
  t.equal(location.origin, new URL(stack.upstream.issuer).origin, 'to the upstream')
  t.equal(location.searchParams.get('scope'), stack.config.scopes.default.join(' '), 'the default scopes')
  t.equal(location.searchParams.get('redirect_uri'), `${stack.gatewayUrl}/callback`, 'the gateway callback')
  t.equal(location.searchParams.get('code_challenge_method'), 'S256', 'the gateway uses PKCE upstream')
  t.not(location.searchParams.get('code_challenge'), url.searchParams.get('code_challenge'), 'its own challenge, not the client\'s')
  t.equal(location.searchParams.get('resource'), null, 'no resource upstream')
})

t.test('the callback', async (t) => {
  const client = await registerClient(stack)

  /** Starts an authorization and returns the sealed state the gateway sent upstream. */
  async function upstreamState(t: Asserts, state: string): Promise<string> {
    const response = await get(authorizeUrl(stack, client, pkcePair().challenge, { state }))
    t.equal(response.status, 302)
    const sealed = new URL(response.headers.get('location')!).searchParams.get('state')
    t.ok(sealed, 'a sealed transaction in the upstream state')
    return sealed!
  }

  t.test('a garbage state is an HTML 400', async (t) => {
    const callback = new URL('/callback', stack.gatewayUrl)
    callback.searchParams.set('code', 'upstream-code')
    callback.searchParams.set('iss', stack.upstream.issuer)
    for (const state of ['garbage', 'a.b.c', '']) {
      if (state) callback.searchParams.set('state', state)
      else callback.searchParams.delete('state')
      await refusedWithPage(t, await get(callback), /invalid or has expired/)
    }
  })

  t.test('a tampered state is an HTML 400', async (t) => {
    const sealed = await upstreamState(t, 'tamper')
    const last = sealed.at(-2) === 'A' ? 'B' : 'A'
    const tampered = `${sealed.slice(0, -2)}${last}${sealed.at(-1)}`
    const callback = new URL('/callback', stack.gatewayUrl)
    callback.searchParams.set('code', 'upstream-code')
    callback.searchParams.set('state', tampered)
    callback.searchParams.set('iss', stack.upstream.issuer)
    await refusedWithPage(t, await get(callback), /invalid or has expired/)
  })

  t.test('replaying a callback that already succeeded is an HTML 400', async (t) => {
    const url = authorizeUrl(stack, client, pkcePair().challenge, { state: 'replay' })
    const browser = new CookieBrowser()
    const result = await signInAndFollow(browser, url.href, stack.upstream.account, (next) => next.href.startsWith(`${stack.gatewayUrl}/callback`))
    const callback = result.redirect!
    t.ok(callback, 'the upstream sends the browser to the gateway callback')

    const first = await browser.get(callback)
    t.equal(first.status, 302, 'the first visit succeeds')
    const toClient = new URL(first.headers.get('location')!)
    t.equal(toClient.origin + toClient.pathname, CHATGPT_REDIRECT)
    t.ok(toClient.searchParams.get('code'), 'with a code')
    t.equal(toClient.searchParams.get('state'), 'replay')

    await refusedWithPage(t, await browser.get(callback), /already completed/)
    await refusedWithPage(t, await get(callback), /already completed/)
  })

  t.test('the upstream answering access_denied goes back to the client', async (t) => {
    const sealed = await upstreamState(t, 'denied-state')
    const callback = new URL('/callback', stack.gatewayUrl)
    callback.searchParams.set('error', 'access_denied')
    callback.searchParams.set('error_description', 'the user said no')
    callback.searchParams.set('state', sealed)
    callback.searchParams.set('iss', stack.upstream.issuer)
    const response = await get(callback)
    const location = redirectedWithError(t, response, CHATGPT_REDIRECT, 'access_denied', 'denied-state')
    t.not(location.searchParams.get('iss'), stack.upstream.issuer, 'never the upstream issuer')
    // The transaction is spent: the same state cannot now complete with a code.
    callback.searchParams.delete('error')
    callback.searchParams.delete('error_description')
    callback.searchParams.set('code', 'upstream-code')
    await refusedWithPage(t, await get(callback), /already completed/)
  })

  t.test('an upstream error code the client must not see becomes server_error', async (t) => {
    const sealed = await upstreamState(t, 'odd-error')
    const callback = new URL('/callback', stack.gatewayUrl)
    callback.searchParams.set('error', 'invalid_client')
    callback.searchParams.set('state', sealed)
    callback.searchParams.set('iss', stack.upstream.issuer)
    redirectedWithError(t, await get(callback), CHATGPT_REDIRECT, 'server_error', 'odd-error')
  })

  t.test('a code with another issuer\'s iss is refused back to the client', async (t) => {
    const sealed = await upstreamState(t, 'mix-up')
    const callback = new URL('/callback', stack.gatewayUrl)
    callback.searchParams.set('code', 'upstream-code')
    callback.searchParams.set('state', sealed)
    callback.searchParams.set('iss', 'https://attacker.example')
    redirectedWithError(t, await get(callback), CHATGPT_REDIRECT, 'server_error', 'mix-up')
  })
})

t.test('a real sign-in reaches the client with code, state and iss', async (t) => {
  // The control for the refusals above: the same helpers, nothing bent.
  const client = await registerClient(stack)
  const { redirect, state } = await obtainCode(stack, client)
  t.equal(redirect.origin + redirect.pathname, CHATGPT_REDIRECT)
  t.equal(redirect.searchParams.get('state'), state)
  t.equal(redirect.searchParams.get('iss'), stack.gatewayUrl)
  t.equal(redirect.searchParams.get('error'), null)
})
