/**
 * The attacks of the OAuth 2.0 Security Best Current Practice (RFC 9700) that
 * apply to a broker like the gateway, one test each, against the real stack.
 * The consent-specific ones in a real browser (cross-site answer, framing)
 * are in test/browser/consent.test.ts.
 */
import t from 'tap'
import { CookieBrowser, consentForm, signInAndFollow } from '../support/browser.ts'
import { authorizeUrl, obtainCode, pkcePair, postForm, registerClient } from '../support/flow.ts'
import { CHATGPT_REDIRECT, startStack } from '../support/stack.ts'

const stack = await startStack()
t.teardown(() => stack.close())
const tokenEndpoint = `${stack.gatewayUrl}/token`

type Asserts = Pick<typeof t, 'equal' | 'match' | 'ok' | 'notOk'>

function get(url: URL | string) {
  return fetch(url, { redirect: 'manual' })
}

async function failsWithJson(t: Asserts, response: Response, status: number, error: string, description?: RegExp) {
  const body = (await response.json()) as { error: string; error_description: string }
  t.equal(response.status, status, `status ${status}`)
  t.equal(body.error, error, error)
  if (description) t.match(body.error_description, description)
}

/** An HTML error page: 400, no Location, not frameable. */
async function pageRefusal(t: Asserts, response: Response, says: RegExp) {
  t.equal(response.status, 400, 'status 400')
  t.equal(response.headers.get('location'), null, 'no redirect')
  t.match(await response.text(), says)
}

/** Drives a browser through consent and the upstream sign-in until the upstream sends it to the gateway's callback. */
async function upToCallback(client: Awaited<ReturnType<typeof registerClient>>, state = 'client-state') {
  const browser = new CookieBrowser()
  const { verifier, challenge } = pkcePair()
  const url = authorizeUrl(stack, client, challenge, { state })
  const result = await signInAndFollow(browser, url.href, stack.upstream.account, (next) => next.href.startsWith(`${stack.gatewayUrl}/callback`))
  if (!result.redirect) throw new Error('the upstream did not send the browser to the callback')
  return { browser, callback: result.redirect, verifier }
}

t.test('§4.5 authorization code injection: a code works only for its client and its PKCE verifier', async (t) => {
  const victimClient = await registerClient(stack)
  const attackerClient = await registerClient(stack, { client_name: 'Attacker' })
  const victim = await obtainCode(stack, victimClient)

  // Another client (another browser's connector) presents the victim's code.
  await failsWithJson(t, await postForm(tokenEndpoint, { grant_type: 'authorization_code', code: victim.code, code_verifier: victim.verifier, redirect_uri: CHATGPT_REDIRECT, client_id: attackerClient.client_id }), 400, 'invalid_grant', /another client/)
  // The same client, but the code injected into the attacker's own session: its verifier does not match.
  const attackerSession = pkcePair()
  await failsWithJson(t, await postForm(tokenEndpoint, { grant_type: 'authorization_code', code: victim.code, code_verifier: attackerSession.verifier, redirect_uri: CHATGPT_REDIRECT, client_id: victimClient.client_id }), 400, 'invalid_grant', /code_verifier:? does not match/)
  // Another redirect URI than the code was issued for.
  await failsWithJson(t, await postForm(tokenEndpoint, { grant_type: 'authorization_code', code: victim.code, code_verifier: victim.verifier, redirect_uri: 'https://chatgpt.com/connector/oauth/other', client_id: victimClient.client_id }), 400, 'invalid_grant', /redirect_uri:? (does not match|must be the redirect_uri of the authorization request)/)
  // The genuine redemption works, and its code issues tokens once.
  const genuine = { grant_type: 'authorization_code', code: victim.code, code_verifier: victim.verifier, redirect_uri: CHATGPT_REDIRECT, client_id: victimClient.client_id }
  const redeemed = await postForm(tokenEndpoint, genuine)
  t.equal(redeemed.status, 200, 'the victim redeems its own code')
  // A repeat by the same client with the same verifier (ChatGPT posts twice) gets the same answer, never new tokens.
  const repeated = await postForm(tokenEndpoint, genuine)
  t.same(await repeated.json(), await redeemed.json(), 'a repeat within the retry window issues nothing new')
})

t.test('§4.8 PKCE downgrade: plain and missing challenges are refused, and a verifier is always required', async (t) => {
  const metadata = (await (await fetch(`${stack.gatewayUrl}/.well-known/oauth-authorization-server`)).json()) as { code_challenge_methods_supported: string[] }
  t.same(metadata.code_challenge_methods_supported, ['S256'], 'only S256 is advertised')
  const client = await registerClient(stack)
  const { challenge } = pkcePair()
  for (const [name, parameters] of [
    ['plain', { code_challenge_method: 'plain', code_challenge: 'x'.repeat(43) }],
    ['no method', { code_challenge_method: '' }],
    ['no challenge at all', { code_challenge: '', code_challenge_method: '' }],
  ] as const) {
    const response = await get(authorizeUrl(stack, client, challenge, { state: name, ...parameters }))
    t.equal(response.status, 302, `${name}: refused back to the client`)
    const location = new URL(response.headers.get('location')!)
    t.equal(location.origin + location.pathname, CHATGPT_REDIRECT)
    t.equal(location.searchParams.get('error'), 'invalid_request', `${name}: invalid_request`)
    t.equal(location.searchParams.get('code'), null)
  }
  const obtained = await obtainCode(stack, client)
  await failsWithJson(t, await postForm(tokenEndpoint, { grant_type: 'authorization_code', code: obtained.code, redirect_uri: CHATGPT_REDIRECT, client_id: client.client_id }), 400, 'invalid_request', /code_verifier is required/)
})

t.test('§4.4 mix-up: the callback accepts only the upstream\'s own iss, and the client only ever sees the gateway\'s', async (t) => {
  const client = await registerClient(stack)
  const forged = await upToCallback(client, 'mix-up')
  t.equal(forged.callback.searchParams.get('iss'), stack.upstream.issuer, 'the upstream sends its iss (RFC 9207)')
  forged.callback.searchParams.set('iss', 'https://attacker-as.example')
  const response = await forged.browser.get(forged.callback)
  const location = new URL(response.headers.get('location')!)
  t.equal(location.searchParams.get('error'), 'server_error', 'another issuer is refused')
  t.equal(location.searchParams.get('code'), null, 'no code')

  const missing = await upToCallback(client, 'no-iss')
  missing.callback.searchParams.delete('iss')
  const withoutIss = new URL((await missing.browser.get(missing.callback)).headers.get('location')!)
  t.equal(withoutIss.searchParams.get('error'), 'server_error', 'a missing iss from an upstream that sends one is refused')

  const genuine = await obtainCode(stack, client)
  t.equal(genuine.redirect.searchParams.get('iss'), stack.gatewayUrl, 'the client gets the gateway as iss, never the upstream')
})

t.test('§4.11 open redirection: an unregistered redirect URI never receives a redirect', async (t) => {
  const client = await registerClient(stack)
  const { challenge } = pkcePair()
  for (const redirectUri of ['https://evil.example/callback', 'https://chatgpt.com.evil.example/connector/oauth/x', 'https://chatgpt.com/connector/oauth/someone-else', 'https://chatgpt.com/connector/oauth/x/../../evil']) {
    // Even with another error in the request, the answer is a page.
    await pageRefusal(t, await get(authorizeUrl(stack, client, challenge, { redirect_uri: redirectUri, response_type: 'token' })), /redirect address/)
  }
  await pageRefusal(t, await get(authorizeUrl(stack, client, challenge, { client_id: 'forged-client', redirect_uri: 'https://evil.example/cb' })), /not registered/)
  // The gateway's own endpoints that carry a destination: a forged callback state or consent answer never redirects.
  await pageRefusal(t, await get(`${stack.gatewayUrl}/callback?code=x&state=forged`), /invalid or has expired/)
  const consent = await postForm(`${stack.gatewayUrl}/consent`, { pending: 'forged', csrf: 'forged', decision: 'deny' })
  await pageRefusal(t, consent, /expired or is broken/)
})

t.test('§4.7 CSRF on the callback: forged, replayed or foreign state is refused with a page', async (t) => {
  const client = await registerClient(stack)
  await pageRefusal(t, await get(`${stack.gatewayUrl}/callback?code=attacker-code&state=attacker-made&iss=${encodeURIComponent(stack.upstream.issuer)}`), /invalid or has expired/)
  await pageRefusal(t, await get(`${stack.gatewayUrl}/callback?code=attacker-code`), /invalid or has expired/)

  // A state the gateway sealed for another purpose (here: a gateway code) is not a transaction.
  const code = await obtainCode(stack, client)
  await pageRefusal(t, await get(`${stack.gatewayUrl}/callback?code=x&state=${encodeURIComponent(code.code)}`), /invalid or has expired/)

  // A genuine state, replayed after its flow completed (the attacker's own finished flow, or a victim's leaked one).
  const flow = await upToCallback(client, 'once')
  t.equal((await flow.browser.get(flow.callback)).status, 302, 'the genuine callback completes')
  await pageRefusal(t, await new CookieBrowser().get(flow.callback), /already completed/)
})

t.test('§4.12 after a POST the browser is sent on with 303, never 307 (which would repost the form)', async (t) => {
  const client = await registerClient(stack)
  const browser = new CookieBrowser()
  const page = await (await browser.get(authorizeUrl(stack, client, pkcePair().challenge))).text()
  const form = consentForm(page)!
  const answer = await browser.postForm(form.action, { ...form.fields, decision: 'approve' })
  t.equal(answer.status, 303)
  t.ok(answer.headers.get('location')?.startsWith(stack.upstream.issuer), 'to the upstream')
})

t.test('§4.16 clickjacking: every page forbids framing', async (t) => {
  const client = await registerClient(stack)
  const consentPage = await get(authorizeUrl(stack, client, pkcePair().challenge))
  const errorPage = await get(authorizeUrl(stack, client, pkcePair().challenge, { client_id: 'unknown' }))
  for (const [name, response] of [['consent page', consentPage], ['error page', errorPage]] as const) {
    t.match(response.headers.get('content-security-policy'), /frame-ancestors 'none'/, `${name}: CSP frame-ancestors 'none'`)
    t.equal(response.headers.get('x-frame-options'), 'DENY', `${name}: X-Frame-Options DENY`)
    t.notMatch(response.headers.get('content-security-policy'), /unsafe-inline|script-src/, `${name}: no script at all`)
    t.equal(response.headers.get('referrer-policy'), 'same-origin', `${name}: its URL never leaks to other sites (§4.2)`)
  }
  t.match(consentPage.headers.get('content-security-policy'), new RegExp(`form-action 'self' ${CHATGPT_REDIRECT.replace(/\/connector.*$/, '').replaceAll('.', '\\.')} ${new URL(stack.upstream.issuer).origin.replaceAll('.', '\\.')}`), 'the consent form may lead only to this site, the client and the upstream')
})
