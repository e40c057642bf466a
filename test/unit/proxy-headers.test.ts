import t from 'tap'
import { isEventStream, requestHeadersFor, resourceMetadataUrl, responseHeadersFrom, withResourceMetadata } from '../../gateway/policy/proxy-headers.ts'

const METADATA = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp'

t.test('the RFC 9728 metadata URL puts the well-known segment before the resource path', async (t) => {
  t.equal(resourceMetadataUrl('https://mcp.example.com/mcp'), METADATA)
  t.equal(resourceMetadataUrl('https://mcp.example.com/mcp/'), METADATA)
  t.equal(resourceMetadataUrl('https://mcp.example.com/v1/mcp'), 'https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp')
})

t.test('a 401 challenge gets resource_metadata only when it lacks one', async (t) => {
  const parameter = `resource_metadata="${METADATA}"`
  t.equal(withResourceMetadata(undefined, METADATA), `Bearer ${parameter}`, 'no challenge')
  t.equal(withResourceMetadata('  ', METADATA), `Bearer ${parameter}`, 'an empty challenge')
  t.equal(withResourceMetadata('Bearer', METADATA), `Bearer ${parameter}`, 'a bare Bearer challenge')
  t.equal(withResourceMetadata('bearer realm="mcp"', METADATA), `Bearer ${parameter}, realm="mcp"`, 'the scheme is case-insensitive')
  t.equal(withResourceMetadata('Bearer error="invalid_token", error_description="expired"', METADATA), `Bearer ${parameter}, error="invalid_token", error_description="expired"`)
  t.equal(withResourceMetadata('Bearer, Basic realm="x"', METADATA), `Bearer ${parameter}, Basic realm="x"`, 'Bearer without parameters before another scheme')
  t.equal(withResourceMetadata('Basic realm="x"', METADATA), `Basic realm="x", Bearer ${parameter}`, 'another scheme only: a Bearer challenge is added')
  t.equal(withResourceMetadata('Bearerish x=1', METADATA), `Bearerish x=1, Bearer ${parameter}`, 'not fooled by a longer scheme name')
  const present = 'Bearer resource_metadata="https://other.example/prm", error="invalid_token"'
  t.equal(withResourceMetadata(present, METADATA), present, 'one already named is left alone')
  t.equal(withResourceMetadata(['Basic realm="x"', 'Bearer error="invalid_token"'], METADATA), `Basic realm="x", Bearer error="invalid_token", Bearer ${parameter}`, 'several fields are one list')
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
