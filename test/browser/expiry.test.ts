/**
 * In Chromium, with a short transaction lifetime (5 seconds): a consent page
 * answered too late, and a sign-in that comes back too late, each end on the
 * error page (status 400, no redirect) that says so and what to do.
 */
import t from 'tap'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { launchChromium, screenshotDirectory } from '../support/chromium.ts'
import { landingPage, startClientSite } from '../support/client-site.ts'
import { authorizeUrl, pkcePair, registerClient } from '../support/flow.ts'
import { startStack } from '../support/stack.ts'

const LIFETIME = 5
const stack = await startStack({ config: (file) => ({ ...file, lifetimes: { transactionSeconds: LIFETIME } }) })
const site = await startClientSite()
site.on('/callback', landingPage)
const redirectUri = `${site.url}/callback`
const browser = await launchChromium()
const shots = screenshotDirectory(t, 'expiry')
t.teardown(async () => {
  await browser.close()
  await site.close()
  await stack.close()
})

/** Long enough for a sealed value with LIFETIME seconds to be past its expiry (whole seconds). */
const tooLate = () => sleep((LIFETIME + 1.5) * 1000)

t.test('a consent page answered after it expired', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const client = await registerClient(stack, { client_name: 'Slow Reader', redirect_uris: [redirectUri] })
  await page.goto(authorizeUrl(stack, client, pkcePair().challenge, { redirect_uri: redirectUri }).href)
  await page.getByRole('button', { name: 'Approve' }).waitFor()
  await tooLate()
  const [answer] = await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Approve' }).click()])
  t.equal(answer?.status(), 400, 'status 400')
  t.equal(new URL(page.url()).pathname, '/consent', 'the browser stays at the gateway')
  const text = await page.locator('main').textContent()
  t.match(text, /This consent page has expired or is broken \(a page lasts 5 seconds\)/, 'says what went wrong')
  t.match(text, /Go back to the app and start connecting again/, 'says what to do')
  t.notOk(site.hits.some((hit) => hit.startsWith('/callback')), 'nothing reached the client')
  await page.screenshot({ path: join(shots, 'consent-expired.png'), fullPage: true })
})

t.test('a sign-in that comes back after the transaction expired', async (t) => {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const client = await registerClient(stack, { client_name: 'Slow Signer', redirect_uris: [redirectUri] })
  await page.goto(authorizeUrl(stack, client, pkcePair().challenge, { redirect_uri: redirectUri }).href)
  await page.getByRole('button', { name: 'Approve' }).click()
  await page.waitForURL((url) => url.href.startsWith(stack.upstream.issuer))
  await page.getByLabel('Email').fill(stack.upstream.account.username)
  await page.getByLabel('Password').fill(stack.upstream.account.password)
  await tooLate()
  const callback = page.waitForResponse((response) => response.url().startsWith(`${stack.gatewayUrl}/callback`))
  await page.getByRole('button', { name: 'Sign in' }).click()
  t.equal((await callback).status(), 400, 'the callback answers 400')
  await page.waitForLoadState('load')
  t.equal(new URL(page.url()).pathname, '/callback', 'the browser stays at the gateway')
  t.match(await page.locator('main').textContent(), /This sign-in link is invalid or has expired \(it lasts 5 seconds\)/)
  t.notOk(site.hits.some((hit) => hit.startsWith('/callback')), 'nothing reached the client')
})
