/**
 * The connected-apps page's sign-in at the edges, over real HTTP against the
 * oidc-provider upstream: what it asks the upstream for, a callback finished
 * in another browser or twice, the upstream refusing, an identity the
 * upstream does not tell, and bad input, each a clear HTML page that starts
 * no session. (The page itself, in a browser: test/browser/connections.test.ts.)
 */
import t from 'tap'
import { connectRedis, createRedisClient } from '../../gateway/state/redis-connection.ts'
import { RedisStore } from '../../gateway/state/redis-store.ts'
import { CookieBrowser, signInAndFollow } from '../support/browser.ts'
import { postForm } from '../support/flow.ts'
import { deletePrefix, keysWithTtl, randomPrefix, rawClient, SHARED_REDIS_URL } from '../support/redis.ts'
import { ConnectorProvider } from '../support/mcp-client.ts'
import { callWhoami, connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, startStack, type Stack } from '../support/stack.ts'

const stack = await startStack()
t.teardown(() => stack.close())

/** Follows a page sign-in until the upstream sends the browser to the gateway's callback; returns that URL, not fetched. */
async function signInUntilCallback(target: Stack, browser: CookieBrowser, account = target.upstream.account): Promise<URL> {
  const result = await signInAndFollow(browser, `${target.gatewayUrl}/connections`, account, (url) => url.href.startsWith(`${target.gatewayUrl}/callback`))
  if (!result.redirect) throw new Error(`no callback: ${result.response?.status} ${result.body?.slice(0, 300)}`)
  return result.redirect
}

async function page(response: Response) {
  return { status: response.status, type: response.headers.get('content-type'), body: await response.text(), setCookie: response.headers.getSetCookie() }
}

t.test('the sign-in asks the upstream, as the gateway\'s own client, only who the user is, with PKCE and a state bound to the browser', async (t) => {
  const browser = new CookieBrowser()
  const start = await browser.get(`${stack.gatewayUrl}/connections`)
  t.equal(start.status, 302, 'no session: to the upstream')
  t.equal(start.headers.get('cache-control'), 'no-store')
  const to = new URL(start.headers.get('location')!)
  t.ok(to.href.startsWith(stack.upstream.issuer), 'the upstream\'s authorization endpoint')
  t.equal(to.searchParams.get('client_id'), stack.upstream.clientId, 'the gateway\'s own upstream client')
  t.equal(to.searchParams.get('redirect_uri'), `${stack.gatewayUrl}/callback`, 'its existing callback')
  t.equal(to.searchParams.get('scope'), 'openid profile email', 'who the user is, never offline_access')
  t.equal(to.searchParams.get('code_challenge_method'), 'S256')
  t.match(to.searchParams.get('code_challenge'), /^[\w-]{43}$/)
  t.ok(stack.gateway.gateway.userSessions.openSignIn(to.searchParams.get('state')), 'a page sign-in sealed in state')
  t.match(start.headers.getSetCookie().join('\n'), /^gateway-sign-in=[\w-]+; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/m, 'the sign-in cookie that binds it to this browser')
  const second = new URL((await browser.get(`${stack.gatewayUrl}/connections`)).headers.get('location')!)
  t.not(second.searchParams.get('state'), to.searchParams.get('state'), 'a new state each time')
  t.not(second.searchParams.get('code_challenge'), to.searchParams.get('code_challenge'), 'and a new PKCE challenge')
})

t.test('a callback finished in another browser starts no session and spends nothing; the genuine one then works once', async (t) => {
  const browser = new CookieBrowser()
  const callback = await signInUntilCallback(stack, browser)
  const elsewhere = await page(await new CookieBrowser().get(callback))
  t.equal(elsewhere.status, 400)
  t.match(elsewhere.type, /^text\/html/)
  t.match(elsewhere.body, /This sign-in was not started in this browser/)
  t.notMatch(elsewhere.setCookie.join('\n'), /gateway-session=[^;]/, 'no session')

  const genuine = await browser.get(callback)
  t.equal(genuine.status, 302, 'the browser that started it finishes it')
  t.equal(genuine.headers.get('location'), `${stack.gatewayUrl}/connections`, 'back to the page')
  t.match(genuine.headers.getSetCookie().join('\n'), /gateway-session=[\w.-]+; Path=\/; Max-Age=1800; HttpOnly; SameSite=Lax/, 'the session starts')
  const shown = await page(await browser.get(`${stack.gatewayUrl}/connections`))
  t.equal(shown.status, 200)
  t.match(shown.body, /Signed in as <strong>NeonPanel Demo<\/strong> \(demo@neonpanel.test\)/)
  t.match(shown.body, /No apps are connected/, 'a user without apps is told so')

  const again = await page(await browser.get(callback))
  t.equal(again.status, 400, 'the same callback again')
  t.match(again.body, /already completed \(state is used once\)/)
})

t.test('the upstream refusing the sign-in, and a forged state, are error pages', async (t) => {
  const browser = new CookieBrowser()
  const start = new URL((await browser.get(`${stack.gatewayUrl}/connections`)).headers.get('location')!)
  const state = start.searchParams.get('state')!
  const denied = await page(await browser.get(`${stack.gatewayUrl}/callback?error=access_denied&error_description=the+user+cancelled&state=${encodeURIComponent(state)}&iss=${encodeURIComponent(stack.upstream.issuer)}`))
  t.equal(denied.status, 400)
  t.match(denied.type, /^text\/html/)
  t.match(denied.body, /the user cancelled/, 'what the upstream said')
  t.match(denied.body, /<code>access_denied<\/code>/)
  t.notMatch(denied.setCookie.join('\n'), /gateway-session=[^;]/, 'no session')
  const forged = await page(await browser.get(`${stack.gatewayUrl}/callback?code=x&state=${encodeURIComponent(state.slice(0, -4))}AAAA`))
  t.equal(forged.status, 400)
  t.match(forged.body, /invalid or has expired/)
})

t.test('bad input on the page\'s endpoints gets a clear HTML page, never a crash', async (t) => {
  const repeated = await page(await fetch(`${stack.gatewayUrl}/connections?disconnected=1&disconnected=2`))
  t.equal(repeated.status, 400)
  t.match(repeated.type, /^text\/html/)
  const noSession = await page(await postForm(`${stack.gatewayUrl}/connections/disconnect`, { grant: 'g_x', csrf: 'x' }))
  t.equal(noSession.status, 400, 'disconnect without a session')
  t.match(noSession.body, /has ended \(it lasts 30 minutes\), so nothing was changed/)
  const json = await fetch(`${stack.gatewayUrl}/connections/disconnect`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant":' })
  t.equal(json.status, 400, 'a broken body')
  t.match(json.headers.get('content-type'), /^text\/html/)
  const huge = await postForm(`${stack.gatewayUrl}/connections/disconnect`, { grant: 'g'.repeat(20_000) })
  t.equal(huge.status, 400, 'an oversized body: the error page')
  t.match(huge.headers.get('content-type'), /^text\/html/)
  const signOut = await page(await postForm(`${stack.gatewayUrl}/connections/sign-out`, {}))
  t.equal(signOut.status, 200, 'sign-out without a session is simply done')
  t.match(signOut.body, /You signed out of this page/)
  t.match(signOut.setCookie.join('\n'), /^gateway-session=; Path=\/; Max-Age=0/m, 'and removes any session cookie')
  const head = await fetch(`${stack.gatewayUrl}/connections`, { method: 'HEAD', redirect: 'manual' })
  t.equal(head.status, 302, 'HEAD as GET')
})

t.test('an identity the upstream does not tell: the page says it is unavailable, after the sign-in, and starts no session', async (t) => {
  const anonymous = await startStack({ config: (file) => ({ ...file, upstream: { ...file.upstream, userClaim: 'no_such_claim' } }) })
  t.teardown(() => anonymous.close())
  const browser = new CookieBrowser()
  const callback = await signInUntilCallback(anonymous, browser)
  const shown = await page(await browser.get(callback))
  t.equal(shown.status, 200)
  t.match(shown.body, /Connected apps are not available here/)
  t.match(shown.body, /ask your NeonPanel administrator/)
  t.notMatch(shown.setCookie.join('\n'), /gateway-session=[^;]/, 'no session')
})

t.test('with Redis: the single-use marks and a sign-out live in the shared store, each with a TTL no longer than it must', async (t) => {
  const prefix = randomPrefix()
  const client = createRedisClient({ connection: { mode: 'single', url: SHARED_REDIS_URL, tls: false }, keyPrefix: prefix, commandTimeoutMs: 1000 })
  connectRedis(client, { info() {}, warn() {} })
  const store = new RedisStore(client)
  // Connected before the first request, which would otherwise be answered 503.
  while ((await store.notReadyBecause().catch(() => 'unreachable')) !== undefined) await new Promise((resolve) => setTimeout(resolve, 50))
  const shared = await startStack({ store })
  const raw = rawClient()
  t.teardown(async () => {
    await shared.close()
    await deletePrefix(prefix)
    raw.disconnect()
  })
  const browser = new CookieBrowser()
  const callback = await signInUntilCallback(shared, browser)
  t.equal((await browser.get(callback)).status, 302, 'signed in')
  const shown = await browser.get(`${shared.gatewayUrl}/connections`)
  const csrf = /action="\/connections\/sign-out"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"/.exec(await shown.text())?.[1]
  t.ok(csrf, 'the sign-out form\'s token')
  const session = browser.cookieHeader(shared.gatewayUrl)
  const signedOut = await browser.postForm(`${shared.gatewayUrl}/connections/sign-out`, { csrf: csrf! })
  t.equal(signedOut.status, 200, 'signed out')

  const keys = await keysWithTtl(raw, prefix)
  const ttlOf = (start: string) => [...keys].filter(([key]) => key.startsWith(`${prefix}${start}`)).map(([, ttl]) => ttl)
  t.equal(ttlOf('sign-in:').length, 1, 'the sign-in\'s single-use mark')
  t.ok(ttlOf('sign-in:').every((ttl) => ttl > 0 && ttl <= 600_000), 'for lifetimes.transactionSeconds')
  t.equal(ttlOf('session-csrf:').length, 1, 'the spent CSRF token\'s mark')
  t.equal(ttlOf('session-ended:').length, 1, 'the ended session')
  t.ok([...ttlOf('session-csrf:'), ...ttlOf('session-ended:')].every((ttl) => ttl > 0 && ttl <= 1_800_000), 'no longer than the session would have lasted')

  // The ended session, presented again (a copied cookie), is no session: the page signs in anew.
  const again = await fetch(`${shared.gatewayUrl}/connections`, { headers: { cookie: session }, redirect: 'manual' })
  t.equal(again.status, 302, 'a signed-out session cookie starts a new sign-in')
  t.ok(again.headers.get('location')?.startsWith(shared.upstream.issuer))
})

t.test('front mode: once the user disconnects an app, its access token is refused at /mcp too', async (t) => {
  const front = await startStack({ front: true })
  t.teardown(() => front.close())
  const app = new ConnectorProvider(CHATGPT_REDIRECT)
  t.match((await connectWithSdk(front, app)).whoamiAfterRefresh, /signed in as/, 'the app calls tools through the gateway')
  const browser = new CookieBrowser()
  t.equal((await browser.get(await signInUntilCallback(front, browser))).status, 302, 'the user signs in at the page')
  const html = await (await browser.get(`${front.gatewayUrl}/connections`)).text()
  const form = /<input type="hidden" name="grant" value="([^"]+)">\s*<input type="hidden" name="csrf" value="([^"]+)">/.exec(html)
  t.ok(form, 'the app\'s Disconnect form')
  const done = await browser.postForm(`${front.gatewayUrl}/connections/disconnect`, { grant: form![1]!, csrf: form![2]! })
  t.equal(done.status, 303, 'disconnected, and back to the page')
  const refused = await fetch(front.mcpUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${app.saved!.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  })
  t.equal(refused.status, 401, 'the access token it holds is refused at /mcp')
  t.match(refused.headers.get('www-authenticate'), /invalid_token/)
  await t.rejects(callWhoami(front, app), 'and the app cannot call tools any more')
})
