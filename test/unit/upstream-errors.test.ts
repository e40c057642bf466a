import t from 'tap'
import { ResponseBodyError } from 'openid-client'
import { chooseAuthMethod, issuerSpellings } from '../../gateway/upstream/index.ts'
import { redact, sameIssuer, translateUpstreamError } from '../../gateway/upstream/errors.ts'

/** An openid-client error the way it reaches the gateway: a coded error whose cause is the upstream's response. */
function clientError(code: string, response: Response) {
  return Object.assign(new Error('unexpected HTTP response status code', { cause: response }), { code })
}

const TOKEN_LIKE = 'eyJhbGciOiJSUzI1NiJ9abc123def456ghi789'

t.test('redact keeps words and cuts tokens', async (t) => {
  t.equal(redact('grant request is invalid'), 'grant request is invalid')
  t.equal(redact(`token ${TOKEN_LIKE} expired`), 'token [redacted] expired')
  t.equal(redact('see /.well-known/oauth-authorization-server for details'), 'see /.well-known/oauth-authorization-server for details', 'long runs without digits stay')
  t.equal(redact('x'.repeat(400)).length, 301, 'cut short')
})

t.test('issuers differing by a trailing slash are the same', async (t) => {
  t.ok(sameIssuer('https://id.example.com/oauth', 'https://id.example.com/oauth/'))
  t.notOk(sameIssuer('https://id.example.com/oauth', 'https://id.example.com/oauth2'))
  t.same(issuerSpellings('https://id.example.com/oauth').map(String), ['https://id.example.com/oauth', 'https://id.example.com/oauth/'])
  t.same(issuerSpellings('https://id.example.com/oauth/').map(String), ['https://id.example.com/oauth/', 'https://id.example.com/oauth'])
  t.same(issuerSpellings('https://id.example.com').map(String), ['https://id.example.com/'], 'a bare origin has one spelling')
})

t.test('auto picks the client authentication the metadata lists', async (t) => {
  t.equal(chooseAuthMethod('auto', {}), 'client_secret_basic', 'nothing listed: the RFC 8414 default')
  t.equal(chooseAuthMethod('auto', { token_endpoint_auth_methods_supported: ['client_secret_post'] }), 'client_secret_post')
  t.equal(chooseAuthMethod('auto', { token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'] }), 'client_secret_basic')
  t.equal(chooseAuthMethod('auto', { token_endpoint_auth_methods_supported: ['private_key_jwt'] }), 'client_secret_basic', 'none the gateway can do: try the default')
  t.equal(chooseAuthMethod('client_secret_post', { token_endpoint_auth_methods_supported: ['client_secret_basic'] }), 'client_secret_post', 'forced')
})

t.test('an OAuth error answer keeps its code, with the status RFC 6749 §5.2 gives it', async (t) => {
  const response = new Response(null, { status: 400, headers: { 'content-type': 'application/json' } })
  const err = new ResponseBodyError('server responded with an error in the response body', { cause: { error: 'invalid_grant', error_description: 'grant request is invalid' }, response })
  const translated = await translateUpstreamError(err, 'token (refresh_token)')
  t.match(translated, { status: 400, error: 'invalid_grant', message: 'the NeonPanel sign-in service refused the token (refresh_token) request: invalid_grant: grant request is invalid' })
  t.match(translated.details, { upstream: { call: 'token (refresh_token)', status: 400, error: 'invalid_grant' } })
})

t.test('a JSON OAuth error with status 500 keeps its code', async (t) => {
  const response = new Response(JSON.stringify({ error: 'invalid_grant', error_description: 'expired' }), { status: 500, headers: { 'content-type': 'application/json' } })
  const translated = await translateUpstreamError(clientError('OAUTH_RESPONSE_IS_NOT_CONFORM', response), 'token (authorization_code)')
  t.match(translated, { status: 400, error: 'invalid_grant' })
  t.match(translated.details, { upstream: { status: 500, error: 'invalid_grant', error_description: 'expired' } })
})

t.test('codes that mean the gateway is misconfigured become 502 server_error, with a hint for ops', async (t) => {
  for (const code of ['invalid_client', 'unauthorized_client', 'unsupported_grant_type', 'invalid_target']) {
    const response = new Response(JSON.stringify({ error: code }), { status: code === 'invalid_client' ? 401 : 400, headers: { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="x"' } })
    const translated = await translateUpstreamError(clientError('OAUTH_WWW_AUTHENTICATE_CHALLENGE', response), 'token (authorization_code)')
    t.match(translated, { status: 502, error: 'server_error', message: new RegExp(`refused the gateway's own .*\\(${code}\\)`) }, code)
    t.type((translated.details as { hint?: unknown }).hint, 'string', `${code}: a hint`)
  }
})

t.test('temporarily_unavailable and server_error from the upstream', async (t) => {
  const answer = (error: string) => new Response(JSON.stringify({ error }), { status: 503, headers: { 'content-type': 'application/json' } })
  t.match(await translateUpstreamError(clientError('OAUTH_RESPONSE_IS_NOT_CONFORM', answer('temporarily_unavailable')), 'token (refresh_token)'), { status: 503, error: 'temporarily_unavailable' })
  t.match(await translateUpstreamError(clientError('OAUTH_RESPONSE_IS_NOT_CONFORM', answer('server_error')), 'token (refresh_token)'), { status: 502, error: 'server_error' })
})

t.test('an HTML page becomes 502 server_error; the log gets a redacted excerpt', async (t) => {
  const page = `<html><body><h1>Bad Request</h1><p>code ${TOKEN_LIKE} rejected</p></body></html>`
  const response = new Response(page, { status: 400, headers: { 'content-type': 'text/html; charset=utf-8' } })
  const translated = await translateUpstreamError(clientError('OAUTH_RESPONSE_IS_NOT_JSON', response), 'token (authorization_code)')
  t.match(translated, { status: 502, error: 'server_error', message: 'the NeonPanel sign-in service answered the token (authorization_code) request with HTTP 400 (text/html) instead of an OAuth JSON answer' })
  const excerpt = (translated.details as { upstream: { excerpt: string } }).upstream.excerpt
  t.match(excerpt, /Bad Request/)
  t.notMatch(excerpt, /eyJhbGci/, 'no token in the excerpt')
})

t.test('an error code with characters RFC 6749 does not allow is not an OAuth answer', async (t) => {
  const response = new Response(JSON.stringify({ error: 'bad"code\\' }), { status: 400, headers: { 'content-type': 'application/json' } })
  t.match(await translateUpstreamError(clientError('OAUTH_RESPONSE_IS_NOT_CONFORM', response), 'revocation'), { status: 502, error: 'server_error' })
})

t.test('transport failures', async (t) => {
  const timeout = Object.assign(new Error('timed out'), { cause: Object.assign(new Error('headers'), { code: 'UND_ERR_HEADERS_TIMEOUT' }) })
  t.match(await translateUpstreamError(timeout, 'discovery'), { status: 504, error: 'temporarily_unavailable', message: /did not answer the discovery request in time/ })
  const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }) })
  t.match(await translateUpstreamError(refused, 'token (refresh_token)'), { status: 503, error: 'temporarily_unavailable', message: /cannot be reached for the token \(refresh_token\) request \(ECONNREFUSED\)/ })
  const odd = Object.assign(new Error('invalid response encountered', { cause: new Error('"response" body "access_token" property must be a string') }), { code: 'OAUTH_INVALID_RESPONSE' })
  t.match(await translateUpstreamError(odd, 'token (authorization_code)'), { status: 502, error: 'server_error', message: /cannot accept: "response" body "access_token" property must be a string/ })
})
