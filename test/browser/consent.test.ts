/**
 * In a real browser (Chromium): a new user sees the consent page, approves,
 * signs in at the stand-in NeonPanel and lands on the client's redirect URI
 * with a code that works; the same browser is not asked again for the same
 * scopes, but is for other scopes or with prompt=consent; Deny goes back
 * with access_denied; a replayed answer, a forged or swapped cookie and an
 * answer posted from another site are refused; the page is accessible,
 * readable on a phone, loads nothing from elsewhere and cannot be framed; the
 * error page says what went wrong.
 */
import t from 'tap'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { clientHandle } from '../../gateway/clients/registry.ts'
import { approvalKey, ConsentPolicy } from '../../gateway/policy/consent.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { fitsWidth, focusedText, launchChromium, screenshotDirectory } from '../support/chromium.ts'
import { landingPage, startClientSite } from '../support/client-site.ts'
import { authorizeUrl, exchangeCode, pkcePair, registerClient, type RegisteredClient } from '../support/flow.ts'
import { startStack } from '../support/stack.ts'

const stack = await startStack()
const site = await startClientSite()
site.on('/callback', landingPage)
const redirectUri = `${site.url}/callback`
const browser = await launchChromium()
const shots = screenshotDirectory(t, 'consent')
t.teardown(async () => {
  await browser.close()
  await site.close()
  await stack.close()
})

async function newClient(name = 'Acme Reports'): Promise<RegisteredClient> {
  return registerClient(stack, { client_name: name, redirect_uris: [redirectUri] })
}

/** Starts an authorization in the page; returns the PKCE verifier, the state and the gateway's /authorize response. */
async function startAuthorization(page: Page, client: RegisteredClient, scope = 'openid email offline_access', extra: Record<string, string> = {}) {
  const { verifier, challenge } = pkcePair()
  const url = authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri, scope, ...extra })
  const authorizeResponse = page.waitForResponse((response) => response.url().startsWith(`${stack.gatewayUrl}/authorize`))
  await page.goto(url.href)
  const response = await authorizeResponse
  return { verifier, state: url.searchParams.get('state')!, status: response.status(), headers: response.headers() }
}

async function signInAtUpstream(page: Page) {
  await page.waitForURL((url) => url.href.startsWith(stack.upstream.issuer))
  await page.getByLabel('Email').fill(stack.upstream.account.username)
  await page.getByLabel('Password').fill(stack.upstream.account.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
}

async function landedAtClient(page: Page): Promise<URL> {
  await page.waitForURL((url) => url.href.startsWith(redirectUri))
  return new URL(page.url())
}

/** The consent cookie as the browser holds it. */
async function consentCookie(context: BrowserContext) {
  return (await context.cookies(stack.gatewayUrl)).find((cookie) => cookie.name === stack.gateway.gateway.consent.cookieName)
}

t.test('a new user approves, signs in and lands on the client with a working code; the next time is not asked', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const requested: string[] = []
  page.on('request', (request) => requested.push(request.url()))
  const client = await newClient()

  const started = await startAuthorization(page, client)
  t.equal(started.status, 200, 'the consent page')
  t.equal(await page.title(), 'Connect Acme Reports to your NeonPanel account? · NeonPanel')
  await t.resolves(page.getByRole('heading', { level: 1, name: 'Connect Acme Reports to your NeonPanel account?' }).waitFor(), 'the client name in the heading')
  t.equal(await page.locator('#redirect-host').textContent(), new URL(redirectUri).host, 'the redirect host, prominently')
  const scopes = await page.locator('.scopes li').allTextContents()
  t.same(scopes, ['Confirm who you are on NeonPanel openid', 'See your email address email', 'Stay connected while you are away, until you disconnect it offline_access'], 'the scopes, in words')
  t.match(await page.locator('main').textContent(), /The app chose this name itself/, 'a self-chosen name is marked as unverified')
  t.same(requested, [requested[0]], 'the page loads nothing else: no third-party resources')
  t.match(started.headers['content-security-policy'], /frame-ancestors 'none'/)
  t.match(started.headers['content-security-policy'], /default-src 'none'/)
  t.equal(started.headers['x-frame-options'], 'DENY')
  await page.screenshot({ path: join(shots, 'consent-desktop.png'), fullPage: true })

  // Accessible: landmarks, a named form, buttons by role, and keyboard focus in reading order.
  await t.resolves(page.getByRole('banner').waitFor(), 'a banner landmark')
  await t.resolves(page.getByRole('main').waitFor(), 'a main landmark')
  await t.resolves(page.getByRole('form', { name: /applies to this app, this address and these permissions only/ }).waitFor(), 'a named form')
  await page.keyboard.press('Tab')
  t.equal(await focusedText(page), 'Approve', 'Tab reaches Approve first')
  await page.keyboard.press('Tab')
  t.equal(await focusedText(page), 'Deny', 'then Deny')

  await page.getByRole('button', { name: 'Approve' }).click()
  await signInAtUpstream(page)
  const landed = await landedAtClient(page)
  t.equal(landed.searchParams.get('state'), started.state, 'the client state comes back')
  t.equal(landed.searchParams.get('iss'), stack.gatewayUrl, 'iss is the gateway')
  const tokens = await exchangeCode(stack, client, { code: landed.searchParams.get('code')!, verifier: started.verifier, state: started.state, redirect: landed })
  t.ok(tokens.access_token, 'the code works: an access token')

  const cookie = await consentCookie(context)
  t.ok(cookie, 'the approval is remembered in a cookie')
  t.equal(cookie?.httpOnly, true, 'HttpOnly')
  t.equal(cookie?.sameSite, 'Lax', 'SameSite=Lax')
  t.equal(cookie?.path, '/', 'Path=/')
  t.ok(cookie && cookie.expires > Date.now() / 1000 + 29 * 24 * 3600, 'for the configured 30 days')

  // The second time in the same browser: straight to the upstream (already signed in there) and back.
  const again = await startAuthorization(page, client)
  const second = await landedAtClient(page)
  t.not(again.status, 200, 'no consent page')
  t.equal(second.searchParams.get('state'), again.state)
  t.ok(await exchangeCode(stack, client, { code: second.searchParams.get('code')!, verifier: again.verifier, state: again.state, redirect: second }))

  // The approval holds for the same scopes in any order; more scopes, or prompt=consent, ask again.
  t.not((await startAuthorization(page, client, 'offline_access email openid')).status, 200, 'the same scopes in another order: no consent page')
  await landedAtClient(page)
  const wider = await startAuthorization(page, client, 'openid email offline_access profile')
  t.equal(wider.status, 200, 'another scope: asked again')
  t.match(await page.locator('main').textContent(), /profile/, 'naming the scopes asked for')
  t.equal((await startAuthorization(page, client, undefined, { prompt: 'consent' })).status, 200, 'prompt=consent: asked again')
})

t.test('readable on a phone', async (t) => {
  const context = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
  t.teardown(() => context.close())
  const page = await context.newPage()
  await startAuthorization(page, await newClient('A connector with a rather long name that has to wrap on a phone'))
  t.ok(await fitsWidth(page), 'no sideways scrolling')
  const approve = await page.getByRole('button', { name: 'Approve' }).boundingBox()
  const deny = await page.getByRole('button', { name: 'Deny' }).boundingBox()
  t.ok(approve && deny && approve.height >= 44 && deny.height >= 44, 'buttons are at least 44 px tall (touch targets)')
  t.ok(approve && deny && deny.y > approve.y, 'stacked on a narrow screen')
  await page.screenshot({ path: join(shots, 'consent-phone.png'), fullPage: true })
})

t.test('Deny sends access_denied back to the client, with state and iss, and never reaches the upstream', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const upstreamRequests: string[] = []
  page.on('request', (request) => request.url().startsWith(stack.upstream.issuer) && upstreamRequests.push(request.url()))
  const client = await newClient()
  const started = await startAuthorization(page, client)
  await page.getByRole('button', { name: 'Deny' }).click()
  const landed = await landedAtClient(page)
  t.equal(landed.searchParams.get('error'), 'access_denied')
  t.equal(landed.searchParams.get('state'), started.state)
  t.equal(landed.searchParams.get('iss'), stack.gatewayUrl)
  t.equal(landed.searchParams.get('code'), null, 'no code')
  t.same(upstreamRequests, [], 'the upstream never saw the browser')
  t.equal((await startAuthorization(page, client)).status, 200, 'a denied client is asked again next time')
})

t.test('a replayed answer is refused: the CSRF token counts once', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  await startAuthorization(page, await newClient())
  const pending = await page.locator('input[name=pending]').inputValue()
  const csrf = await page.locator('input[name=csrf]').inputValue()
  await page.getByRole('button', { name: 'Approve' }).click()
  await signInAtUpstream(page)
  await landedAtClient(page)

  // The same answer again, posted by the same browser from the gateway's own origin.
  await page.goto(`${stack.gatewayUrl}/no-such-page`)
  const [response] = await Promise.all([page.waitForNavigation(), page.evaluate(postForm(`${stack.gatewayUrl}/consent`, { pending, csrf, decision: 'approve' }))])
  t.equal(response?.status(), 400, 'status 400')
  t.match(await page.locator('main').textContent(), /already answered/, 'the page says why')
  t.ok(page.url().startsWith(stack.gatewayUrl), 'no redirect anywhere')
})

t.test('a forged, tampered or foreign consent cookie is not an approval', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const client = await newClient()
  await startAuthorization(page, client)
  await page.getByRole('button', { name: 'Approve' }).click()
  await signInAtUpstream(page)
  await landedAtClient(page)
  const genuine = (await consentCookie(context))!

  // Tampered: one character of the sealed value changed.
  const flipped = genuine.value.slice(0, -3) + (genuine.value.at(-3) === 'A' ? 'B' : 'A') + genuine.value.slice(-2)
  await context.addCookies([{ ...genuine, value: flipped }])
  t.equal((await startAuthorization(page, client)).status, 200, 'tampered: asked again')

  // Forged: a well-formed cookie approving this client, sealed under another secret.
  const forger = new ConsentPolicy(new Sealer(['another-gateway-secret-0123456789abcdef']), stack.config)
  const forgedHeader = forger.setCookie(forger.withApproval(forger.newCookie(), approvalKey(client.client_id, redirectUri), 'openid email offline_access', clientHandle(client.client_id)))
  const forgedValue = forgedHeader.split(';')[0]!.slice(forger.cookieName.length + 1)
  await context.addCookies([{ ...genuine, value: forgedValue }])
  t.equal((await startAuthorization(page, client)).status, 200, 'forged: asked again')

  // Swapped: the page was made for this browser, the cookie is another browser's (genuine) one.
  const other = await browser.newContext()
  t.teardown(() => other.close())
  const otherPage = await other.newPage()
  await startAuthorization(otherPage, await newClient())
  const otherCookie = (await consentCookie(other))!
  await startAuthorization(page, await newClient())
  await context.addCookies([{ ...genuine, value: otherCookie.value }])
  const [answer] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Approve' }).click()])
  t.equal(answer?.status(), 400, 'another browser\'s cookie: refused')
  t.match(await page.locator('main').textContent(), /could not be verified as coming from this browser/)

  // Missing: no cookie at all.
  await startAuthorization(page, await newClient())
  await context.clearCookies()
  const [missing] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Approve' }).click()])
  t.equal(missing?.status(), 400, 'no cookie: refused')
  await page.screenshot({ path: join(shots, 'consent-refused.png'), fullPage: true })
})

t.test('an answer posted from another site is refused (CSRF), even with genuine page values', async (t) => {
  const attacker = await startClientSite({ hostname: 'localhost' })
  t.teardown(() => attacker.close())
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const victim = await context.newPage()
  // The victim has used the gateway before (it holds a consent cookie) …
  await startAuthorization(victim, await newClient())
  // … and the attacker copies a consent form's values into a page on its own site that posts itself.
  const pending = await victim.locator('input[name=pending]').inputValue()
  const csrf = await victim.locator('input[name=csrf]').inputValue()
  attacker.on('/win-a-prize', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(`<!doctype html><form id="f" method="post" action="${stack.gatewayUrl}/consent">
<input name="pending" value="${pending}"><input name="csrf" value="${csrf}"><input name="decision" value="approve"></form>
<script>document.getElementById('f').submit()</script>`)
  })
  const [response] = await Promise.all([victim.waitForNavigation({ url: (url) => url.pathname === '/consent' }), victim.goto(`${attacker.url}/win-a-prize`)])
  t.equal(response?.status(), 400, 'refused with the error page')
  t.match(await victim.locator('main').textContent(), /sent from another website/)
  t.notOk(victim.url().startsWith(stack.upstream.issuer), 'the browser was not sent upstream')
})

t.test('the consent page cannot be framed (clickjacking)', async (t) => {
  const attacker = await startClientSite({ hostname: 'localhost' })
  t.teardown(() => attacker.close())
  const client = await newClient()
  const { challenge } = pkcePair()
  const consentUrl = authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri })
  const framing = (src: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(`<!doctype html><h1>Click the button for a prize</h1><iframe src="${src.replaceAll('&', '&amp;')}" width="600" height="600"></iframe>`)
  }
  attacker.on('/frame', framing(consentUrl.href))
  attacker.on('/control', framing(redirectUri))
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()

  // The control: the same attacker page frames an ordinary page, and its content shows.
  await page.goto(`${attacker.url}/control`)
  const control = page.frames().find((frame) => frame !== page.mainFrame())!
  await t.resolves(control.getByRole('heading', { name: 'Back at the app' }).waitFor(), 'an ordinary page shows inside the frame')

  const answered = page.waitForResponse((response) => response.url().startsWith(`${stack.gatewayUrl}/authorize`))
  await page.goto(`${attacker.url}/frame`)
  t.equal((await answered).status(), 200, 'the gateway answered the framed request with its page')
  await page.waitForLoadState('load')
  const frame = page.frames().find((candidate) => candidate !== page.mainFrame())
  t.ok(frame, 'the frame exists')
  t.notOk(frame!.url().startsWith(stack.gatewayUrl), 'but the browser did not load the gateway page into it')
  t.equal(await frame!.locator('button').count(), 0, 'no Approve button inside the frame')
  await page.screenshot({ path: join(shots, 'framed.png') })
})

t.test('the error page says what went wrong and what to try, with status 400 and no redirect', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const client = await newClient()
  const { challenge } = pkcePair()
  const cases: Array<[string, Record<string, string>, RegExp, RegExp]> = [
    ['unknown client', { client_id: 'not-a-client' }, /not registered with the gateway/, /Remove the connector in the app and add it again/],
    ['redirect URI not registered', { redirect_uri: 'https://evil.example/callback' }, /https:\/\/evil\.example\/callback is not one this app registered/, /check the connector settings/],
  ]
  for (const [name, parameters, what, advice] of cases) {
    const response = await page.goto(authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri, ...parameters }).href)
    t.equal(response?.status(), 400, `${name}: status 400`)
    t.ok(page.url().startsWith(`${stack.gatewayUrl}/authorize`), `${name}: the browser stays at the gateway`)
    t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign-in could not continue')
    const text = await page.locator('main').textContent()
    t.match(text, what, `${name}: what went wrong`)
    t.match(text, advice, `${name}: what to try`)
    t.equal(response?.headers()['x-frame-options'], 'DENY')
    await page.screenshot({ path: join(shots, `error-${name.replaceAll(' ', '-')}.png`), fullPage: true })
  }

  const callback = await page.goto(`${stack.gatewayUrl}/callback?code=x&state=broken`)
  t.equal(callback?.status(), 400, 'a broken transaction: 400')
  t.match(await page.locator('main').textContent(), /invalid or has expired \(it lasts 10 minutes\)/)
  t.match(await page.locator('main').textContent(), /start connecting again/)
})

/** A page script that builds and submits a form (the page's own CSP does not apply to the test driver). */
function postForm(action: string, fields: Record<string, string>): string {
  const inputs = Object.entries(fields).map(([name, value]) => `<input type="hidden" name="${name}" value="${value}">`).join('')
  return `(() => { const f = document.createElement('form'); f.method = 'post'; f.action = ${JSON.stringify(action)}; f.innerHTML = ${JSON.stringify(inputs)}; document.body.appendChild(f); f.submit() })()`
}

