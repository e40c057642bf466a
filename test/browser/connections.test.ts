/**
 * The connected-apps page in a real browser (Chromium), against the real
 * oidc-provider upstream with two accounts, the official MCP SDK as the
 * clients and the SDK's MCP server: user A connects a ChatGPT-like app (in
 * this browser) and a Claude-like one, user B one app; A signs in at
 * /connections and sees exactly their two, disconnects the ChatGPT-like one
 * (its refresh is refused, the upstream saw the revocation, the Claude-like
 * one still refreshes and calls tools, B's is untouched) and is asked for
 * consent again on reconnecting. A cannot see or end B's grants by any id;
 * missing, wrong and replayed CSRF tokens, posts from another site, framing,
 * forged and expired sessions change nothing; sign-out keeps the apps
 * connected; without an identity from the upstream the page says so.
 *
 * The apps' redirect URIs are on chatgpt.com and claude.ai, which tests
 * cannot reach: the browser's requests there are answered by the test
 * (Playwright routing), as the real apps would receive them.
 */
import t from 'tap'
import { join } from 'node:path'
import type { OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js'
import type { BrowserContext, Page } from 'playwright-core'
import { UserSessions } from '../../gateway/policy/user-session.ts'
import { Sealer } from '../../gateway/state/seal.ts'
import { fitsWidth, launchChromium, screenshotDirectory } from '../support/chromium.ts'
import { startClientSite } from '../support/client-site.ts'
import { authorizeUrl, pkcePair, postForm, registerClient, type RegisteredClient } from '../support/flow.ts'
import { capturedLog } from '../support/log-capture.ts'
import { sample } from '../support/metrics.ts'
import { ConnectorProvider } from '../support/mcp-client.ts'
import { callWhoami, connectWithSdk } from '../support/sdk-flow.ts'
import { CHATGPT_REDIRECT, startStack, TEST_SECRET } from '../support/stack.ts'
import type { StandInAccount } from '../support/upstream.ts'

const CLAUDE_REDIRECT = 'https://claude.ai/api/mcp/auth_callback'

const log = capturedLog()
const stack = await startStack({ logger: log.logger })
const browser = await launchChromium()
const shots = screenshotDirectory(t, 'connections')
const [userA, userB] = stack.upstream.accounts as [StandInAccount, StandInAccount]
t.teardown(async () => {
  await browser.close()
  await stack.close()
})

/** A's browser: the ChatGPT-like app is connected here, so its consent is remembered here. */
const context = await browser.newContext()
const page = await context.newPage()
t.teardown(() => context.close())

/**
 * The browser part of a connection, in Chromium: the consent page when it is
 * shown (approved), the upstream sign-in when it is shown, and the landing on
 * the app's redirect URI, answered here (the app's site is on the internet).
 */
function inChromium(page: Page, account: StandInAccount, seen: { consentAsked?: boolean } = {}) {
  return async (authorizationUrl: URL, isClientRedirect: (url: URL) => boolean): Promise<URL> => {
    let landed: URL | undefined
    const atApp = (url: URL) => isClientRedirect(url)
    // Seen on the way out; answered when it ends a navigation of its own (routing does not see the last hop of a redirect chain).
    const noticed = (request: { url(): string }) => {
      if (atApp(new URL(request.url()))) landed = new URL(request.url())
    }
    page.on('request', noticed)
    await page.route(atApp, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>Back at the app</title><h1>Back at the app</h1>' }))
    try {
      const authorize = page.waitForResponse((response) => response.url().startsWith(`${stack.gatewayUrl}/authorize`))
      // Without a consent page the whole way is one redirect chain, ending at the app's (unreachable) host.
      const gone = await page.goto(authorizationUrl.href).then(() => undefined, (err: Error) => err)
      seen.consentAsked = (await authorize).status() === 200
      if (gone && !landed) throw gone
      if (seen.consentAsked) await page.getByRole('button', { name: 'Approve' }).click()
      if (!landed) await signInIfAsked(page, account, (url) => atApp(url))
      return landed!
    } finally {
      page.off('request', noticed)
      await page.unroute(atApp)
    }
  }
}

/** Signs in at the upstream when its sign-in page shows, and waits until `done` says where the browser should end up. */
async function signInIfAsked(page: Page, account: StandInAccount, done: (url: URL) => boolean) {
  const email = page.getByLabel('Email')
  await Promise.race([page.waitForURL(done), email.waitFor()])
  if (done(new URL(page.url()))) return
  await email.fill(account.username)
  await page.getByLabel('Password').fill(account.password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(done)
}

/** Opens /connections, signing in at the upstream when asked; returns the page's response status. */
async function openConnections(page: Page, account: StandInAccount) {
  await page.goto(`${stack.gatewayUrl}/connections`)
  await signInIfAsked(page, account, (url) => url.href.startsWith(`${stack.gatewayUrl}/connections`))
  await page.getByRole('heading', { level: 1 }).waitFor()
}

/** A refresh at the gateway's token endpoint as the app would send it. */
function refresh(provider: ConnectorProvider, refreshToken = provider.saved!.refresh_token!) {
  return postForm(`${stack.gatewayUrl}/token`, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: provider.client!.client_id })
}

async function grantsOf(account: StandInAccount) {
  return (await stack.gateway.gateway.grants.listForUser(account.id)).items
}

function revocationsAtUpstream() {
  return stack.upstream.requests.filter((request) => request.path === '/token/revocation')
}

/** Posts a form from the page's own origin (the page script's form, so Origin and Sec-Fetch-Site are the browser's own). */
async function postFromPage(page: Page, path: string, fields: Record<string, string>) {
  const inputs = Object.entries(fields).map(([name, value]) => `<input type="hidden" name="${name}" value="${value.replaceAll('"', '&quot;')}">`).join('')
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.evaluate(`(() => { const f = document.createElement('form'); f.method = 'post'; f.action = ${JSON.stringify(`${stack.gatewayUrl}${path}`)}; f.innerHTML = ${JSON.stringify(inputs)}; document.body.appendChild(f); f.submit() })()`),
  ])
  return response
}

/**
 * Whether this browser is asked for consent for `client`: an authorization
 * through the consent page (approved) and the upstream, without exchanging
 * the code, so it leaves an approval and no grant.
 */
async function askedForConsent(client: RegisteredClient): Promise<boolean> {
  const seen: { consentAsked?: boolean } = {}
  const url = authorizeUrl(stack, client, pkcePair().challenge, { scope: 'openid' })
  await inChromium(page, userA, seen)(url, (landed) => landed.href.startsWith(client.redirect_uris[0]!))
  return seen.consentAsked === true
}

/** Another app A approved in this browser without connecting it (no grant): its approval must outlive the ChatGPT-like app's disconnect. */
let bystander: RegisteredClient

const chatgpt = new ConnectorProvider(CHATGPT_REDIRECT, { client_name: 'ChatGPT' })
const claude = new ConnectorProvider(CLAUDE_REDIRECT, { client_name: 'Claude' })
const otherUsersApp = new ConnectorProvider(CLAUDE_REDIRECT, { client_name: 'Claude' })

t.test('A connects two apps, B one; A signs in at /connections and sees exactly their two', async (t) => {
  const seen: { consentAsked?: boolean } = {}
  const first = await connectWithSdk(stack, chatgpt, { browse: inChromium(page, userA, seen) })
  t.ok(seen.consentAsked, 'A approved the ChatGPT-like app on the consent page, in this browser')
  t.equal(first.whoamiAfterRefresh, `signed in as ${userA.id}`, 'the ChatGPT-like app calls tools as A')
  const second = await connectWithSdk(stack, claude, { account: userA })
  t.equal(second.whoamiAfterRefresh, `signed in as ${userA.id}`, 'the Claude-like app (connected from another browser) calls tools as A')
  const third = await connectWithSdk(stack, otherUsersApp, { account: userB })
  t.equal(third.whoamiAfterRefresh, `signed in as ${userB.id}`, 'B\'s app calls tools as B')
  bystander = await registerClient(stack, { client_name: 'Bystander', redirect_uris: [CLAUDE_REDIRECT] })
  t.ok(await askedForConsent(bystander), 'A approves another app in this browser, without connecting it')
  t.notOk(await askedForConsent(bystander), 'which this browser then remembers')
  t.equal((await grantsOf(userA)).length, 2, 'A has two grants')
  t.equal((await grantsOf(userB)).length, 1, 'B has one')

  const revocationsBefore = revocationsAtUpstream().length
  const opened = page.waitForResponse((response) => response.url() === `${stack.gatewayUrl}/connections` && response.request().method() === 'GET' && response.status() === 200)
  await openConnections(page, userA)
  const headers = (await opened).headers()
  t.equal(await page.title(), 'Your connected apps · NeonPanel')
  t.equal(await page.locator('#signed-in-as').textContent(), `Signed in as ${userA.name} (${userA.username}).`, 'who is signed in, by name and email')
  const apps = page.getByRole('region')
  t.same(await apps.getByRole('heading', { level: 2 }).allTextContents(), ['ChatGPT', 'Claude'], 'exactly A\'s two apps, oldest first')
  const chatgptApp = page.getByRole('region', { name: 'ChatGPT' })
  t.match(await chatgptApp.textContent(), /Unverified name/, 'a self-chosen name is marked unverified, as on the consent page')
  t.equal(await chatgptApp.locator('dd.host').textContent(), 'chatgpt.com', 'where it sends A back')
  t.equal(await page.getByRole('region', { name: 'Claude' }).locator('dd.host').textContent(), 'claude.ai')
  t.same(await chatgptApp.locator('.scopes li').allTextContents(), ['Confirm who you are on NeonPanel openid', 'See your name profile', 'See your email address email'], 'what it may do, in the consent page\'s words (the scopes the SDK asked for: protected resource metadata no longer offers offline_access)')
  t.match(await chatgptApp.textContent(), /Connected since\d{1,2} \w{3} \d{4}, \d\d:\d\d UTC/, 'connected since')
  t.match(await chatgptApp.textContent(), /Last used\d{1,2} \w{3} \d{4}, \d\d:\d\d UTC/, 'last used')
  t.notMatch(await page.locator('main').textContent(), new RegExp(userB.id), 'nothing of B')
  t.match(headers['content-security-policy'], /frame-ancestors 'none'/, 'cannot be framed (CSP)')
  t.equal(headers['x-frame-options'], 'DENY', 'cannot be framed (X-Frame-Options)')
  t.equal(headers['cache-control'], 'no-store')

  const cookie = (await context.cookies(stack.gatewayUrl)).find((candidate) => candidate.name === 'gateway-session')
  t.ok(cookie, 'the session cookie (gateway-session on loopback http; __Host-gateway-session on https)')
  t.equal(cookie?.httpOnly, true, 'HttpOnly')
  t.equal(cookie?.sameSite, 'Lax', 'SameSite=Lax')
  t.equal(cookie?.path, '/', 'Path=/')
  t.ok(cookie && cookie.expires <= Date.now() / 1000 + 30 * 60 + 5 && cookie.expires > Date.now() / 1000 + 29 * 60, 'for connections.sessionMinutes (30)')
  t.notOk((await context.cookies(stack.gatewayUrl)).some((candidate) => candidate.name === 'gateway-sign-in'), 'the spent sign-in cookie is gone')

  t.equal(revocationsAtUpstream().length, revocationsBefore, 'signing in revoked nothing at the upstream')
  const stillWorking = await refresh(chatgpt)
  t.equal(stillWorking.status, 200, 'signing in in the browser that connected the ChatGPT-like app leaves it working')
  chatgpt.saveTokens((await stillWorking.json()) as OAuthTokens)
  await page.screenshot({ path: join(shots, 'connections-desktop.png'), fullPage: true })
})

t.test('keyboard: real buttons, named per app, in reading order', async (t) => {
  await page.locator('body').click({ position: { x: 1, y: 1 } })
  const focused = async () => String(await page.evaluate('document.activeElement ? (document.activeElement.getAttribute("aria-label") || document.activeElement.textContent.trim()) : ""'))
  await page.keyboard.press('Tab')
  t.equal(await focused(), 'Disconnect ChatGPT', 'Tab reaches the first app\'s Disconnect button')
  await page.keyboard.press('Tab')
  t.equal(await focused(), 'Disconnect Claude', 'then the second\'s')
  await page.keyboard.press('Tab')
  t.equal(await focused(), 'Sign out of this page', 'then Sign out')
  t.equal(await page.getByRole('button', { name: 'Disconnect ChatGPT' }).count(), 1, 'buttons by role and name')
})

t.test('A cannot end B\'s grant, by its id or any other, even with a genuine CSRF token', async (t) => {
  const [bGrant] = await grantsOf(userB)
  for (const [name, grant] of [['B\'s grant id', bGrant!.grantId], ['an unknown id', 'g_000000000nosuchgrantnosuch'], ['a malformed id', '<script>alert(1)</script>']] as const) {
    await openConnections(page, userA)
    const fresh = await page.locator('form[action="/connections/disconnect"] input[name=csrf]').first().inputValue()
    const response = await postFromPage(page, '/connections/disconnect', { grant, csrf: fresh })
    t.equal(response?.status(), 400, `${name}: 400`)
    t.match(await page.locator('main').textContent(), /None of your connected apps has this id/, `${name}: a clear page`)
  }
  t.equal((await grantsOf(userB)).length, 1, 'B\'s grant is still there')
  const bRefresh = await refresh(otherUsersApp)
  t.equal(bRefresh.status, 200, 'and B\'s app still refreshes')
  otherUsersApp.saveTokens((await bRefresh.json()) as OAuthTokens)
  t.equal((await grantsOf(userA)).length, 2, 'none of A\'s ended either')
})

t.test('CSRF: missing, for another action, forged or replayed; posts from another site; a forged or expired session', async (t) => {
  await openConnections(page, userA)
  const [chatgptGrant] = await grantsOf(userA)
  const disconnectCsrf = await page.locator('form[action="/connections/disconnect"] input[name=csrf]').first().inputValue()
  const signOutCsrf = await page.locator('form[action="/connections/sign-out"] input[name=csrf]').inputValue()
  const forger = new UserSessions(new Sealer(['another-gateway-secret-0123456789abcdef']), stack.config)
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no CSRF token', { grant: chatgptGrant!.grantId }, /could not be verified as coming from your connected-apps page/],
    ['the sign-out form\'s token', { grant: chatgptGrant!.grantId, csrf: signOutCsrf }, /could not be verified/],
    ['a token sealed under another secret', { grant: chatgptGrant!.grantId, csrf: forger.csrfToken({ sid: 'x', user: { id: userA.id }, exp: 0 }, 'disconnect') }, /could not be verified/],
  ]
  for (const [name, fields, why] of cases) {
    const response = await postFromPage(page, '/connections/disconnect', fields)
    t.equal(response?.status(), 400, `${name}: 400`)
    t.match(await page.locator('main').textContent(), why, `${name}: says why`)
    t.ok(page.url().startsWith(stack.gatewayUrl), `${name}: no redirect anywhere`)
  }
  t.equal((await grantsOf(userA)).length, 2, 'nothing ended')

  // A cross-site form (localhost is another site than 127.0.0.1) with the page's genuine values.
  const attacker = await startClientSite({ hostname: 'localhost' })
  t.teardown(() => attacker.close())
  attacker.on('/win-a-prize', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(`<!doctype html><form id="f" method="post" action="${stack.gatewayUrl}/connections/disconnect">
<input name="grant" value="${chatgptGrant!.grantId}"><input name="csrf" value="${disconnectCsrf}"></form>
<script>document.getElementById('f').submit()</script>`)
  })
  const [crossSite] = await Promise.all([page.waitForNavigation({ url: (url) => url.pathname === '/connections/disconnect' }), page.goto(`${attacker.url}/win-a-prize`)])
  t.equal(crossSite?.status(), 400, 'a post from another site: 400')
  t.match(await page.locator('main').textContent(), /sent from another website/, 'says so')
  const withOrigin = await postForm(`${stack.gatewayUrl}/connections/disconnect`, { grant: chatgptGrant!.grantId, csrf: disconnectCsrf }, { origin: 'https://evil.example', cookie: await cookieHeader(context) })
  t.equal(withOrigin.status, 400, 'a foreign Origin, even with the session cookie: 400')
  t.match(withOrigin.headers.get('content-type'), /^text\/html/, 'an HTML page')
  const withSite = await postForm(`${stack.gatewayUrl}/connections/disconnect`, { grant: chatgptGrant!.grantId, csrf: disconnectCsrf }, { 'sec-fetch-site': 'cross-site', cookie: await cookieHeader(context) })
  t.equal(withSite.status, 400, 'Sec-Fetch-Site cross-site: 400')
  t.equal((await grantsOf(userA)).length, 2, 'nothing ended')

  // The session: forged under another secret, and genuine but expired.
  const genuine = (await context.cookies(stack.gatewayUrl)).find((cookie) => cookie.name === 'gateway-session')!
  const forged = forger.startSession({ id: userA.id }).setCookies[0]!.split(';')[0]!.split('=')[1]!
  const opened = new Sealer([TEST_SECRET]).open<{ sid: string; user: { id: string } }>('session', genuine.value)!
  const expired = new Sealer([TEST_SECRET]).seal('session', { sid: opened.sid, user: opened.user }, -1)
  for (const [name, value] of [['a forged session', forged], ['an expired session', expired]] as const) {
    await context.addCookies([{ ...genuine, value }])
    const response = await postFromPage(page, '/connections/disconnect', { grant: chatgptGrant!.grantId, csrf: disconnectCsrf })
    t.equal(response?.status(), 400, `${name}: 400`)
    t.match(await page.locator('main').textContent(), /sign-in on the connected-apps page has ended \(it lasts 30 minutes\)/, `${name}: says the sign-in ended`)
    const signIns = stack.upstream.requestLines.filter((line) => line === 'GET /auth').length
    await openConnections(page, userA)
    t.equal(stack.upstream.requestLines.filter((line) => line === 'GET /auth').length, signIns + 1, `${name}: opening the page signs in again, through the upstream`)
  }
  await context.addCookies([genuine])
  t.equal((await grantsOf(userA)).length, 2, 'nothing ended')
  await page.screenshot({ path: join(shots, 'connections-refused.png'), fullPage: true })
})

t.test('the page cannot be framed (clickjacking)', async (t) => {
  // Same-site (another port of 127.0.0.1), so the browser sends the SameSite=Lax session cookie into the frame.
  const attacker = await startClientSite()
  t.teardown(() => attacker.close())
  attacker.on('/frame', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(`<!doctype html><h1>Click for a prize</h1><iframe src="${stack.gatewayUrl}/connections" width="600" height="600"></iframe>`)
  })
  const answered = page.waitForResponse((response) => response.url() === `${stack.gatewayUrl}/connections`)
  await page.goto(`${attacker.url}/frame`)
  t.equal((await answered).status(), 200, 'the gateway answered the framed request with its page')
  await page.waitForLoadState('load')
  const frame = page.frames().find((candidate) => candidate !== page.mainFrame())
  t.ok(frame, 'the frame exists')
  t.notOk(frame!.url().startsWith(stack.gatewayUrl), 'but the browser did not load the page into it')
  t.equal(await frame!.locator('button').count(), 0, 'no Disconnect button inside the frame')
})

t.test('A disconnects the ChatGPT-like app: it is refused, the upstream saw the revocation, the others keep working', async (t) => {
  await openConnections(page, userA)
  const [chatgptGrant, claudeGrant] = await grantsOf(userA)
  const chatgptForm = page.getByRole('region', { name: 'ChatGPT' }).locator('form')
  const sent = { grant: await chatgptForm.locator('input[name=grant]').inputValue(), csrf: await chatgptForm.locator('input[name=csrf]').inputValue() }
  t.equal(sent.grant, chatgptGrant!.grantId, 'the button\'s form names the ChatGPT-like grant')
  const revocationsBefore = revocationsAtUpstream().length
  const linesBefore = log.lines.length
  const endedByUsers = async () => sample(await (await fetch(`${stack.gatewayUrl}/metrics`)).text(), 'oauth_gateway_grants_ended_total', { reason: 'revoked_by_user' })
  const endedBefore = await endedByUsers()
  const [answer] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Disconnect ChatGPT' }).click()])
  t.equal(answer?.status(), 200, 'back on the page')
  t.equal(new URL(page.url()).pathname, '/connections', 'after a redirect (a reload does not post again)')
  t.match(await page.getByRole('status').textContent(), /The app was disconnected/, 'says it was done')
  t.same(await page.getByRole('region').getByRole('heading', { level: 2 }).allTextContents(), ['Claude'], 'only the Claude-like app is left')

  const refused = await refresh(chatgpt)
  t.equal(refused.status, 400, 'the ChatGPT-like app\'s refresh is refused')
  const body = (await refused.json()) as { error: string; error_description: string }
  t.equal(body.error, 'invalid_grant', 'invalid_grant (RFC 6749 §5.2)')
  t.match(body.error_description, /the user disconnected this app/)
  const revocations = revocationsAtUpstream().slice(revocationsBefore)
  t.equal(revocations.length, 1, 'the upstream saw one revocation')
  t.equal(revocations[0]?.params.token_type_hint, 'refresh_token', 'of the refresh token (RFC 7009)')
  t.equal(revocations[0]?.status, 200)

  t.ok(await stack.gateway.gateway.grants.get(claudeGrant!.grantId), 'the Claude-like grant lives')
  t.equal(await callWhoami(stack, claude), `signed in as ${userA.id}`, 'the Claude-like app calls tools')
  const claudeRefresh = await refresh(claude)
  t.equal(claudeRefresh.status, 200, 'and refreshes')
  claude.saveTokens((await claudeRefresh.json()) as OAuthTokens)
  t.equal(await callWhoami(stack, claude), `signed in as ${userA.id}`, 'and calls tools with the refreshed token')
  const bRefresh = await refresh(otherUsersApp)
  t.equal(bRefresh.status, 200, 'B\'s app refreshes')
  otherUsersApp.saveTokens((await bRefresh.json()) as OAuthTokens)
  t.equal(await callWhoami(stack, otherUsersApp), `signed in as ${userB.id}`, 'and calls tools')

  t.equal(await endedByUsers(), endedBefore + 1, 'counted in oauth_gateway_grants_ended_total{reason="revoked_by_user"}')
  const audit = log.lines.slice(linesBefore).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.audit === true)
  t.equal(audit.length, 1, 'one audit line')
  t.match(audit[0], { audit: true, actor: 'user', action: 'grants.disconnect', user: userA.id, grant_ids: [chatgptGrant!.grantId], client_id: chatgpt.client!.client_id, upstream_revocation: 'revoked' })
  const written = log.lines.slice(linesBefore).join('\n')
  for (const token of [chatgpt.saved!.refresh_token!, chatgpt.saved!.access_token, claude.saved!.refresh_token!]) t.notOk(written.includes(token), 'no token in the log')

  // The same form again (resent, or replayed by someone who saw it) changes nothing more.
  const replayed = await postFromPage(page, '/connections/disconnect', sent)
  t.equal(replayed?.status(), 400, 'a form sent twice is refused')
  t.match(await page.locator('main').textContent(), /already sent/)
  t.equal(revocationsAtUpstream().length, revocationsBefore + 1, 'and reaches nothing upstream')
  t.ok(await stack.gateway.gateway.grants.get(claudeGrant!.grantId), 'the Claude-like grant still lives')
})

t.test('A reconnects the ChatGPT-like app and is asked for consent again; another app\'s approval stays', async (t) => {
  t.notOk(await askedForConsent(bystander), 'the other app approved in this browser is not asked again')
  const seen: { consentAsked?: boolean } = {}
  chatgpt.invalidateCredentials('tokens')
  const again = await connectWithSdk(stack, chatgpt, { browse: inChromium(page, userA, seen) })
  t.ok(seen.consentAsked, 'the consent page is shown again')
  t.equal(again.whoamiAfterRefresh, `signed in as ${userA.id}`, 'and the app works again')
  t.equal((await grantsOf(userA)).length, 2, 'A has two grants again')
})

t.test('sign-out ends the page\'s session only: the apps stay connected', async (t) => {
  await openConnections(page, userA)
  const session = (await context.cookies(stack.gatewayUrl)).find((cookie) => cookie.name === 'gateway-session')!
  const [answer] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign out of this page' }).click()])
  t.equal(answer?.status(), 200)
  t.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'You signed out of this page')
  t.notOk((await context.cookies(stack.gatewayUrl)).some((cookie) => cookie.name === 'gateway-session'), 'the session cookie is gone')
  t.equal((await grantsOf(userA)).length, 2, 'both apps stay connected')
  t.equal((await refresh(claude)).status, 200, 'and refresh')

  // The old session cookie, kept by someone, is ended too.
  await context.addCookies([session])
  const csrf = new UserSessions(new Sealer([TEST_SECRET]), stack.config)
  const opened = csrf.readSession(`gateway-session=${session.value}`)!
  const response = await postFromPage(page, '/connections/disconnect', { grant: (await grantsOf(userA))[0]!.grantId, csrf: csrf.csrfToken(opened, 'disconnect') })
  t.equal(response?.status(), 400, 'a signed-out session cannot disconnect, even with a token made for it')
  t.equal((await grantsOf(userA)).length, 2)
  await context.clearCookies({ name: 'gateway-session' })
  await openConnections(page, userA)
  t.equal(await page.title(), 'Your connected apps · NeonPanel', 'signing in again works')
})

t.test('the consent and error pages link to the page', async (t) => {
  const phone = await browser.newContext()
  t.teardown(() => phone.close())
  const other = await phone.newPage()
  await other.goto(`${stack.gatewayUrl}/callback?code=x&state=broken`)
  await other.getByRole('link', { name: 'Manage connected apps' }).click()
  await other.waitForURL((url) => url.href.startsWith(stack.upstream.issuer))
  t.pass('the error page\'s link leads to the page\'s sign-in')
})

t.test('readable on a phone (and the screenshot for docs/connected-apps.md)', async (t) => {
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
  t.teardown(() => phone.close())
  await phone.addCookies((await context.cookies(stack.gatewayUrl)).filter((cookie) => cookie.name === 'gateway-session'))
  const small = await phone.newPage()
  await openConnections(small, userA)
  t.ok(await fitsWidth(small), 'no sideways scrolling')
  const disconnect = await small.getByRole('button', { name: 'Disconnect ChatGPT' }).boundingBox()
  t.ok(disconnect && disconnect.height >= 44, 'buttons are at least 44 px tall (touch targets)')
  t.ok(disconnect && disconnect.width >= 300, 'and full width on a narrow screen')
  await small.screenshot({ path: join(shots, 'connections-phone.png'), fullPage: true })
  // Only when asked (SCREENSHOT_DIR=docs/images): the picture in docs/connected-apps.md.
  if (process.env.SCREENSHOT_DIR) await small.screenshot({ path: join(process.env.SCREENSHOT_DIR, 'connected-apps.png'), fullPage: true })
})

t.test('without an identity from the upstream the page says it is unavailable, and who can revoke', async (t) => {
  const anonymous = await startStack({ config: (file) => ({ ...file, upstream: { ...file.upstream, identitySource: 'none' } }) })
  t.teardown(() => anonymous.close())
  const other = await browser.newContext()
  t.teardown(() => other.close())
  const tab = await other.newPage()
  const response = await tab.goto(`${anonymous.gatewayUrl}/connections`)
  t.equal(response?.status(), 200)
  t.equal(await tab.getByRole('heading', { level: 1 }).textContent(), 'Connected apps are not available here')
  t.match(await tab.locator('main').textContent(), /administrator: they can see and revoke every connected app/)
  t.ok(tab.url().startsWith(anonymous.gatewayUrl), 'no sign-in is started')
})

async function cookieHeader(context: BrowserContext) {
  return (await context.cookies(stack.gatewayUrl)).map((cookie) => `${cookie.name}=${cookie.value}`).join('; ')
}

