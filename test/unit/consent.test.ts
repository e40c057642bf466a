import t from 'tap'
import { parseConfig } from '../../gateway/config/load.ts'
import { approvalKey, ConsentPolicy, type PendingAuthorization } from '../../gateway/policy/consent.ts'
import { Sealer } from '../../gateway/state/seal.ts'

const env = { GATEWAY_SECRET: 'k'.repeat(32), UPSTREAM_CLIENT_SECRET: 'upstream-secret' }
const file = {
  publicUrl: 'https://oauth.example.com',
  mcpResource: 'https://mcp.example.com/mcp',
  upstream: { issuer: 'https://id.example.com', clientId: 'gateway' },
  allowedRedirectUris: ['https://chatgpt.com/connector/oauth/*', 'http://127.0.0.1/callback'],
  scopes: { supported: ['openid'], default: ['openid'] },
}
const config = parseConfig(file, env)
const sealer = new Sealer(config.secrets)
const policy = new ConsentPolicy(sealer, config)
const pending: PendingAuthorization = { j: 'pending-1', c: 'handle', a: approvalKey('client-a', 'https://chatgpt.com/connector/oauth/1'), r: 'https://chatgpt.com/connector/oauth/1', cc: 'c'.repeat(43), sc: 'openid' }

/** The Cookie header a browser sends back for a Set-Cookie. */
const cookieHeader = (setCookie: string) => setCookie.split(';')[0]!

t.test('the cookie: __Host- prefix, Secure, HttpOnly, SameSite=Lax on https; neither prefix nor Secure on loopback http', async (t) => {
  const header = policy.setCookie(policy.newCookie())
  t.match(header, /^__Host-gateway-consent=[\w.-]+; Path=\/; Max-Age=2592000; HttpOnly; SameSite=Lax; Secure$/)
  t.notMatch(header, /Domain=/i, '__Host- cookies carry no Domain')
  const local = new ConsentPolicy(sealer, parseConfig({ ...file, publicUrl: 'http://127.0.0.1:8080' }, env))
  t.match(local.setCookie(local.newCookie()), /^gateway-consent=[\w.-]+; Path=\/; Max-Age=2592000; HttpOnly; SameSite=Lax$/)
})

t.test('an approval is bound to one client id and one redirect URI, holds its scopes, and expires', async (t) => {
  const cookie = policy.withApproval(policy.newCookie(), pending.a, 'openid email', 'handle-a')
  const read = policy.readCookie(cookieHeader(policy.setCookie(cookie)))
  const key = approvalKey('client-a', 'https://chatgpt.com/connector/oauth/1')
  t.ok(policy.hasApproval(read, key, 'openid email'))
  t.notOk(policy.hasApproval(read, approvalKey('client-b', 'https://chatgpt.com/connector/oauth/1'), 'openid email'), 'another client')
  t.notOk(policy.hasApproval(read, approvalKey('client-a', 'https://chatgpt.com/connector/oauth/2'), 'openid email'), 'another redirect URI')
  t.ok(policy.hasApproval(read, key, 'email  openid email'), 'the same scopes in another order')
  t.ok(policy.hasApproval(read, key, 'openid'), 'fewer scopes than approved')
  t.notOk(policy.hasApproval(read, key, 'openid email profile'), 'more scopes')
  t.same(policy.approvedScopes(read, key), ['email', 'openid'])
  t.notOk(policy.hasApproval(undefined, pending.a, 'openid'), 'no cookie')
  const expired = { b: cookie.b, a: [[pending.a, Math.floor(Date.now() / 1000) - 1, 'openid'] as [string, number, string]] }
  t.notOk(policy.hasApproval(expired, pending.a, 'openid'), 'an expired approval')
  t.notOk(policy.hasApproval({ b: cookie.b, a: [[pending.a, Math.floor(Date.now() / 1000) + 60]] }, pending.a, 'openid'), 'an entry from before scopes were kept approves nothing')
  const never = new ConsentPolicy(sealer, parseConfig({ ...file, consent: { rememberDays: 0 } }, env))
  t.same(never.withApproval(never.newCookie(), pending.a, 'openid', 'handle-a').a, [], 'rememberDays 0 remembers nothing')
})

t.test('approving more scopes adds them to the approval (step-up)', async (t) => {
  const first = policy.withApproval(policy.newCookie(), pending.a, 'openid', 'handle-a')
  t.notOk(policy.hasApproval(first, pending.a, 'openid profile'), 'a new scope is not approved')
  const second = policy.withApproval(first, pending.a, 'openid profile', 'handle-a')
  t.ok(policy.hasApproval(second, pending.a, 'openid profile'), 'the union is')
  t.equal(second.a.length, 1, 'one entry for the client and redirect URI')
  t.same(policy.approvedScopes(second, pending.a), ['openid', 'profile'])
})

t.test('disconnecting a client forgets its approvals only (and the approvals that name no client)', async (t) => {
  const chatgpt = approvalKey('client-a', 'https://chatgpt.com/connector/oauth/1')
  const claude = approvalKey('client-b', 'https://claude.ai/api/mcp/auth_callback')
  const older = approvalKey('client-c', 'https://chatgpt.com/connector/oauth/3')
  let cookie = policy.withApproval(policy.withApproval(policy.newCookie(), chatgpt, 'openid email', 'handle-a'), claude, 'openid', 'handle-b')
  cookie = { b: cookie.b, a: [...cookie.a, [older, Math.floor(Date.now() / 1000) + 60, 'openid']] }
  const forgotten = policy.readCookie(cookieHeader(policy.setCookie(policy.withoutClient(cookie, 'handle-a'))))
  t.equal(forgotten?.b, cookie.b, 'the same browser')
  t.notOk(policy.hasApproval(forgotten, chatgpt, 'openid'), 'the client\'s approval is gone')
  t.ok(policy.hasApproval(forgotten, claude, 'openid'), 'another client\'s approval stays')
  t.notOk(policy.hasApproval(forgotten, older, 'openid'), 'an approval that names no client goes too')
  t.same(policy.withoutClient(policy.newCookie(), 'handle-a').a, [], 'nothing to forget')
})

t.test('a cookie keeps the newest 20 approvals', async (t) => {
  let cookie = policy.newCookie()
  for (let i = 0; i < 25; i++) cookie = policy.withApproval(cookie, `key-${i}`, 'openid email offline_access', 'handle-a')
  t.equal(cookie.a.length, 20)
  t.ok(policy.hasApproval(cookie, 'key-24', 'openid'))
  t.notOk(policy.hasApproval(cookie, 'key-4', 'openid'))
  t.ok(cookieHeader(policy.setCookie(cookie)).length < 4000, 'fits a browser cookie')
})

t.test('forged, tampered, foreign and doubled cookies', async (t) => {
  const genuine = cookieHeader(policy.setCookie(policy.withApproval(policy.newCookie(), pending.a, 'openid', 'handle-a')))
  const value = genuine.slice(genuine.indexOf('=') + 1)
  t.equal(policy.readCookie(`${policy.cookieName}=${value.slice(0, -2)}xx`), undefined, 'tampered')
  t.equal(policy.readCookie(`${policy.cookieName}=garbage`), undefined, 'garbage')
  const other = new ConsentPolicy(new Sealer(['another-secret-another-secret-0123']), config)
  t.equal(policy.readCookie(cookieHeader(other.setCookie(other.withApproval(other.newCookie(), pending.a, 'openid', 'handle-a')))), undefined, 'sealed under another secret')
  t.equal(policy.readCookie(`other=${value}`), undefined, 'under another name')
  t.ok(policy.readCookie(`${policy.cookieName}=garbage; theme=dark; ${genuine}`), 'the genuine one of two')
  const asCode = sealer.seal('code', { b: 'x', a: [] })
  t.equal(policy.readCookie(`${policy.cookieName}=${asCode}`), undefined, 'a value sealed for another purpose')
})

t.test('the CSRF token is bound to the pending authorization and the browser', async (t) => {
  const cookie = policy.newCookie()
  const token = policy.csrfToken(pending, cookie)
  t.ok(policy.csrfMatches(token, pending, cookie))
  t.notOk(policy.csrfMatches(token, { ...pending, j: 'pending-2' }, cookie), 'another pending authorization')
  t.notOk(policy.csrfMatches(token, pending, policy.newCookie()), 'another browser')
  t.notOk(policy.csrfMatches(token, pending, undefined), 'no cookie')
  t.notOk(policy.csrfMatches(`${token}x`, pending, cookie), 'tampered')
  t.notOk(policy.csrfMatches(policy.sealPending(pending), pending, cookie), 'a pending authorization is not a CSRF token')
  t.match(policy.openPending(policy.sealPending(pending)), pending, 'a pending authorization opens')
  t.equal(policy.openPending(token), undefined, 'a CSRF token is not a pending authorization')
})

t.test('trusted clients and redirect URIs skip the page', async (t) => {
  const trusting = new ConsentPolicy(sealer, parseConfig({ ...file, consent: { trustedRedirectUris: ['https://chatgpt.com/connector/oauth/*'], trustedClientIds: ['https://app.example/client.json'] } }, env))
  t.ok(trusting.isTrusted('any-client', new URL('https://chatgpt.com/connector/oauth/abc')), 'a trusted redirect pattern')
  t.notOk(trusting.isTrusted('any-client', new URL('https://chatgpt.com/other/abc')), 'outside the pattern')
  t.ok(trusting.isTrusted('https://app.example/client.json', new URL('https://app.example/cb')), 'a trusted client id')
  t.notOk(trusting.isTrusted('https://app.example/client.json/', new URL('https://app.example/cb')), 'compared exactly')
  t.notOk(policy.isTrusted('any-client', new URL('https://chatgpt.com/connector/oauth/abc')), 'nothing is trusted by default')
})

t.test('configuration: loopback redirect URIs can never be trusted; the loopback switch needs a loopback gateway', async (t) => {
  t.throws(() => parseConfig({ ...file, consent: { trustedRedirectUris: ['http://127.0.0.1/callback'] } }, env), /consent\.trustedRedirectUris\.0: must not be a loopback URI/)
  t.throws(() => parseConfig({ ...file, clientMetadataDocuments: { developmentAllowLoopback: true } }, env), /clientMetadataDocuments\.developmentAllowLoopback: may only be true when publicUrl is a loopback address/)
  t.ok(parseConfig({ ...file, publicUrl: 'http://127.0.0.1:8080', clientMetadataDocuments: { developmentAllowLoopback: true } }, env))
  const defaults = parseConfig(file, env)
  t.same(defaults.consent, { rememberDays: 30, trustedRedirectUris: [], trustedClientIds: [] })
  t.equal(defaults.clientMetadataDocuments.enabled, true, 'client metadata documents are on by default')
  t.equal(defaults.clientMetadataDocuments.developmentAllowLoopback, false)
  t.equal(defaults.clientMetadataDocuments.maxBytes, 5120)
})
