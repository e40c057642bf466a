import t from 'tap'
import { parseConfig } from '../../gateway/config/load.ts'
import { UserSessions } from '../../gateway/policy/user-session.ts'
import { Sealer } from '../../gateway/state/seal.ts'

const env = { GATEWAY_SECRET: 'k'.repeat(32), UPSTREAM_CLIENT_SECRET: 'upstream-secret' }
const file = {
  publicUrl: 'https://oauth.example.com',
  mcpResource: 'https://mcp.example.com/mcp',
  upstream: { issuer: 'https://id.example.com', clientId: 'gateway' },
  allowedRedirectUris: ['https://chatgpt.com/connector/oauth/*'],
  scopes: { supported: ['openid'], default: ['openid'] },
}
const config = parseConfig(file, env)
const sealer = new Sealer(config.secrets)
const sessions = new UserSessions(sealer, config)
const user = { id: 'np-user-1001', name: 'NeonPanel Demo', email: 'demo@neonpanel.test' }

/** The Cookie header a browser sends back for Set-Cookie headers. */
const cookieHeader = (...setCookies: string[]) => setCookies.map((header) => header.split(';')[0]!).join('; ')

t.test('the session cookie: __Host-, Secure, HttpOnly, SameSite=Lax, Path=/ on https, for connections.sessionMinutes', async (t) => {
  t.equal(config.connections.sessionMinutes, 30, 'the default is 30 minutes')
  const { setCookies } = sessions.startSession(user)
  t.match(setCookies[0], /^__Host-gateway-session=[\w.-]+; Path=\/; Max-Age=1800; HttpOnly; SameSite=Lax; Secure$/)
  t.notMatch(setCookies[0], /Domain=/i, '__Host- cookies carry no Domain')
  t.equal(setCookies[1], '__Host-gateway-sign-in=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure', 'the spent sign-in cookie is removed')
  const local = new UserSessions(sealer, parseConfig({ ...file, publicUrl: 'http://127.0.0.1:8080', connections: { sessionMinutes: 5 } }, env))
  t.match(local.startSession(user).setCookies[0], /^gateway-session=[\w.-]+; Path=\/; Max-Age=300; HttpOnly; SameSite=Lax$/, 'loopback http: no prefix, no Secure')
  t.match(local.startSignIn().setCookie, /^gateway-sign-in=[\w-]+; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax$/)
  t.equal(local.endSessionCookie(), 'gateway-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax')
  t.throws(() => parseConfig({ ...file, connections: { sessionMinutes: 0 } }, env), /connections\.sessionMinutes/, 'a lifetime of 0 is refused, naming the key')
})

t.test('a session opens for the user it was made for, and not when forged, tampered, foreign or expired', async (t) => {
  const { session, setCookies } = sessions.startSession(user)
  const read = sessions.readSession(cookieHeader(setCookies[0]!))
  t.same(read, session, 'the same session')
  t.same(read?.user, user)
  t.ok(session.exp - Date.now() / 1000 > 1790, 'ends after the configured lifetime')
  const value = setCookies[0]!.split(';')[0]!.slice(sessions.cookieName.length + 1)
  t.equal(sessions.readSession(`${sessions.cookieName}=${value.slice(0, -2)}xx`), undefined, 'tampered')
  t.equal(sessions.readSession(`${sessions.cookieName}=garbage`), undefined, 'garbage')
  t.equal(sessions.readSession(undefined), undefined, 'none')
  const other = new UserSessions(new Sealer(['another-secret-another-secret-0123']), config)
  t.equal(sessions.readSession(cookieHeader(other.startSession(user).setCookies[0]!)), undefined, 'sealed under another secret')
  const expired = new UserSessions(sealer, config)
  Object.defineProperty(expired, 'sessionSeconds', { value: -1 })
  t.equal(sessions.readSession(cookieHeader(expired.startSession(user).setCookies[0]!)), undefined, 'expired')
  const consentSealed = sealer.seal('consent', { sid: 'x', user: { id: 'np-user-1001' } }, 60)
  t.equal(sessions.readSession(`${sessions.cookieName}=${consentSealed}`), undefined, 'a value sealed for another purpose')
  t.same(sessions.readSession(`${sessions.cookieName}=garbage; ${cookieHeader(setCookies[0]!)}`), session, 'a second cookie of the same name is tried too')
  t.same(sessions.startSession({ id: 'np-user-2', name: '', email: undefined }).session.user, { id: 'np-user-2' }, 'no empty name or email')
})

t.test('a sign-in is bound to the browser that started it, and only its own state opens as one', async (t) => {
  const { signIn, state, setCookie } = sessions.startSignIn()
  t.match(setCookie, /^__Host-gateway-sign-in=[\w-]+; Path=\/; Max-Age=600; HttpOnly; SameSite=Lax; Secure$/, 'lasts as long as a transaction')
  const opened = sessions.openSignIn(state)
  t.match(opened, signIn, 'the state opens as the sign-in')
  t.ok(sessions.startedHere(opened!, cookieHeader(setCookie)), 'in the browser that holds its cookie')
  t.notOk(sessions.startedHere(opened!, cookieHeader(sessions.startSignIn().setCookie)), 'not in a browser holding another sign-in\'s cookie')
  t.notOk(sessions.startedHere(opened!, undefined), 'not in a browser without the cookie')
  t.equal(sessions.openSignIn(sealer.seal('transaction', { j: 'x', v: 'y', b: 'z', k: 'connections' })), undefined, 'a client transaction never opens as a page sign-in')
  t.equal(sessions.openSignIn('garbage'), undefined)
  t.not(sessions.startSignIn().signIn.v, signIn.v, 'a new PKCE verifier each time')
})

t.test('a CSRF token is good for its session and its action only', async (t) => {
  const { session } = sessions.startSession(user)
  const other = sessions.startSession(user).session
  const token = sessions.csrfToken(session, 'disconnect')
  t.type(sessions.csrfMatches(token, session, 'disconnect'), 'string', 'matches its session and action')
  t.equal(sessions.csrfMatches(token, session, 'sign-out'), undefined, 'another action')
  t.equal(sessions.csrfMatches(token, other, 'disconnect'), undefined, 'another session, even of the same user')
  t.equal(sessions.csrfMatches(undefined, session, 'disconnect'), undefined, 'missing')
  t.equal(sessions.csrfMatches('garbage', session, 'disconnect'), undefined, 'garbage')
  t.not(sessions.csrfMatches(sessions.csrfToken(session, 'disconnect'), session, 'disconnect'), sessions.csrfMatches(token, session, 'disconnect'), 'each token has its own single-use id')
})
