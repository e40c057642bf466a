import t from 'tap'
import { challengesToken, isEventStream, requestHeadersFor, resourceMetadataUrl, responseHeadersFrom, gatewayChallenge } from '../../gateway/policy/proxy-headers.ts'
import { parseChallenges, serializeChallenges } from '../../gateway/policy/www-authenticate.ts'

const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'

t.test('the RFC 9728 metadata URL puts the well-known segment before the resource path', async (t) => {
  t.equal(resourceMetadataUrl('https://mcp.example.com/mcp'), METADATA)
  t.equal(resourceMetadataUrl('https://mcp.example.com/mcp/'), METADATA)
  t.equal(resourceMetadataUrl('https://mcp.example.com/v1/mcp'), 'https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp')
})

t.test('every challenge names the gateway\'s resource_metadata, and keeps the rest as written', async (t) => {
  const parameter = `resource_metadata="${METADATA}"`
  t.equal(gatewayChallenge(undefined, METADATA), `Bearer ${parameter}`, 'no challenge')
  t.equal(gatewayChallenge('  ', METADATA), `Bearer ${parameter}`, 'an empty challenge')
  t.equal(gatewayChallenge('Bearer', METADATA), `Bearer ${parameter}`, 'a bare Bearer challenge')
  t.equal(gatewayChallenge('bearer realm="mcp"', METADATA), `bearer ${parameter}, realm="mcp"`, 'the scheme is case-insensitive')
  t.equal(gatewayChallenge('Bearer error="invalid_token", error_description="expired"', METADATA), `Bearer ${parameter}, error="invalid_token", error_description="expired"`)
  t.equal(gatewayChallenge('Bearer, Basic realm="x"', METADATA), `Bearer ${parameter}, Basic realm="x"`, 'Bearer without parameters before another scheme')
  t.equal(gatewayChallenge('Basic realm="x"', METADATA), `Basic realm="x", Bearer ${parameter}`, 'another scheme only: a Bearer challenge is added')
  t.equal(gatewayChallenge('Bearerish x=1', METADATA), `Bearerish x=1, Bearer ${parameter}`, 'not fooled by a longer scheme name')
  t.equal(
    gatewayChallenge('Bearer resource_metadata="http://mcp-server.internal:3000/.well-known/oauth-protected-resource/mcp", error="invalid_token"', METADATA),
    `Bearer ${parameter}, error="invalid_token"`,
    'the MCP server\'s own (internal) address is replaced, in place',
  )
  t.equal(gatewayChallenge('Bearer Resource_Metadata=http://internal/prm', METADATA), `Bearer ${parameter}`, 'parameter names are case-insensitive, token values replaced too')
  t.equal(
    gatewayChallenge(['Basic realm="x"', 'Bearer error="invalid_token"'], METADATA),
    `Basic realm="x", Bearer ${parameter}, error="invalid_token"`,
    'several fields are one list',
  )
  t.equal(
    gatewayChallenge('Bearer error="insufficient_scope", scope="mcp:read mcp:write", error_description="needs \\"write\\", sorry", resource_metadata="http://10.0.0.7/prm"', METADATA),
    `Bearer error="insufficient_scope", scope="mcp:read mcp:write", error_description="needs \\"write\\", sorry", ${parameter}`,
    'a 403 step-up challenge keeps error, scope and a description with escaped quotes and commas',
  )
  t.equal(
    gatewayChallenge('DPoP algs="ES256 PS256", resource_metadata="http://internal/prm", Bearer realm="mcp", Basic realm="legacy"', METADATA),
    `DPoP algs="ES256 PS256", ${parameter}, Bearer ${parameter}, realm="mcp", Basic realm="legacy"`,
    'several challenges: each token scheme names it, Basic is left alone',
  )
  t.equal(
    gatewayChallenge('Bearer error="insufficient_scope", scope="openid offline_access profile"', METADATA),
    `Bearer ${parameter}, error="insufficient_scope", scope="openid profile"`,
    'offline_access never reaches the client in a challenge (SEP-2207)',
  )
  t.equal(gatewayChallenge('Bearer scope=offline_access, error="insufficient_scope"', METADATA), `Bearer ${parameter}, error="insufficient_scope"`, 'a scope of offline_access alone goes')
  t.equal(gatewayChallenge('Negotiate YII=, Bearer', METADATA), `Negotiate YII=, Bearer ${parameter}`, 'a token68 challenge is kept')
  t.equal(gatewayChallenge('Bearer error="unterminated', METADATA), `Bearer ${parameter}`, 'a value that does not parse is replaced')
  t.equal(gatewayChallenge('Bearer realm=a b', METADATA), `Bearer ${parameter}`, 'nor does a value with a stray word')
})

t.test('a 401 is always about the token; a 403 only with a Bearer or DPoP challenge', async (t) => {
  t.ok(challengesToken(401, undefined), 'a 401 without a challenge')
  t.ok(challengesToken(401, 'Basic realm="x"'), 'a 401 with another scheme')
  t.ok(challengesToken(403, 'Bearer error="insufficient_scope", scope="mcp:write"'), 'a 403 insufficient_scope')
  t.ok(challengesToken(403, ['Basic realm="x"', 'dpop error="insufficient_scope"']), 'a DPoP challenge among others, schemes case-insensitive')
  t.notOk(challengesToken(403, undefined), 'a 403 without a challenge (a Host or Origin check)')
  t.notOk(challengesToken(403, 'Basic realm="x"'), 'a 403 with another scheme only')
  t.notOk(challengesToken(403, 'Bearer error="unterminated'), 'a 403 whose challenge does not parse')
  t.notOk(challengesToken(404, 'Bearer'), 'other statuses')
})

t.test('WWW-Authenticate parses as RFC 9110 §11.6.1 lists of challenges', async (t) => {
  t.same(parseChallenges('Bearer realm="a, b", error=invalid_token, Basic realm=x,  Negotiate abc=='), [
    { scheme: 'Bearer', parameters: [{ name: 'realm', value: 'a, b', raw: '"a, b"' }, { name: 'error', value: 'invalid_token', raw: 'invalid_token' }] },
    { scheme: 'Basic', parameters: [{ name: 'realm', value: 'x', raw: 'x' }] },
    { scheme: 'Negotiate', token68: 'abc==', parameters: [] },
  ])
  t.same(parseChallenges('Bearer scope = "a\\\\b \\"c\\""'), [{ scheme: 'Bearer', parameters: [{ name: 'scope', value: 'a\\b "c"', raw: '"a\\\\b \\"c\\""' }] }], 'escapes and spaces around =')
  t.same(parseChallenges(', Bearer ,'), [{ scheme: 'Bearer', parameters: [] }], 'empty list elements')
  for (const broken of ['Bearer error="x', '"Bearer"', 'Bearer =x', 'Bearer a==b', 'Bearer a="x" b="y"']) t.equal(parseChallenges(broken), undefined, broken)
  const written = 'Bearer error="insufficient_scope", scope="read write", Basic realm="r"'
  t.equal(serializeChallenges(parseChallenges(written)!), written, 'written back as it was')
})

t.test('request headers: the MCP ones cross, cookies and hop-by-hop ones do not', async (t) => {
  const headers = requestHeadersFor(
    {
      host: 'mcp.example.com',
      authorization: 'Bearer t',
      accept: 'text/event-stream',
      'content-type': 'application/json',
      'content-length': '2',
      'mcp-session-id': 's',
      'mcp-protocol-version': '2025-06-18',
      'mcp-custom-extension': 'x',
      'last-event-id': '9',
      cookie: 'a=b',
      connection: 'keep-alive, x-secret',
      'x-secret': 'hop',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'transfer-encoding': 'chunked',
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-host': 'spoofed.example',
    },
    { clientAddress: '10.0.0.2', publicUrl: new URL('https://mcp.example.com/mcp') },
  )
  t.same(headers, {
    authorization: 'Bearer t',
    accept: 'text/event-stream',
    'content-type': 'application/json',
    'content-length': '2',
    'mcp-session-id': 's',
    'mcp-protocol-version': '2025-06-18',
    'mcp-custom-extension': 'x',
    'last-event-id': '9',
    'x-forwarded-for': '203.0.113.7, 10.0.0.2',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'mcp.example.com',
  })
})

t.test('response headers: hop-by-hop and CORS stay behind, the rest crosses', async (t) => {
  const headers = responseHeadersFrom({
    'content-type': 'text/event-stream',
    'mcp-session-id': 's',
    'set-cookie': ['a=1', 'b=2'],
    connection: 'close, x-hop',
    'x-hop': '1',
    'transfer-encoding': 'chunked',
    'access-control-allow-origin': 'https://only.example',
    'www-authenticate': 'Bearer',
  })
  t.same(headers, { 'content-type': 'text/event-stream', 'mcp-session-id': 's', 'set-cookie': ['a=1', 'b=2'], 'www-authenticate': 'Bearer' })
  t.ok(isEventStream(headers))
  t.notOk(isEventStream({ 'content-type': 'application/json' }))
})
