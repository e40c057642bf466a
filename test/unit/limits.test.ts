/** The pure helpers behind the limits: parameter counting, client-safe descriptions, log excerpts. */
import t from 'tap'
import { describeForClient } from '../../gateway/errors.ts'
import { countParameters } from '../../gateway/http/params.ts'
import { excerptOf } from '../../gateway/upstream/fetch.ts'

t.test('parameters are counted with every repeat', async (t) => {
  t.equal(countParameters(undefined), 0)
  t.equal(countParameters('a=b'), 0, 'an unparsed body carries no parameters')
  t.equal(countParameters({ a: '1', b: ['2', '3', '4'] }), 4, 'a repeated parameter counts each time')
  t.equal(countParameters(JSON.parse('{"__proto__":"x","constructor":"y"}')), 2, 'prototype names are parameters like any other')
  t.equal(countParameters([1, 2, 3]), 3, 'a JSON array body')
})

t.test('descriptions keep RFC 6749 §5.2 characters and stay short', async (t) => {
  t.equal(describeForClient('must be "Basic" followed by base64'), "must be 'Basic' followed by base64")
  t.equal(describeForClient('unsupported scope: ø\\<x>'), 'unsupported scope: ?/<x>')
  t.equal(describeForClient('line\r\nbreak'), 'line??break')
  const long = describeForClient(`resource must be ${'x'.repeat(1000)}`)
  t.equal(long.length, 300)
  t.ok(long.endsWith('...'))
  t.match(long, /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/)
})

t.test('log excerpts never carry a token', async (t) => {
  const answer = Buffer.from(JSON.stringify({ access_token: 'short', refresh_token: 'r', token_type: 'Bearer', id_token: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig' }))
  const excerpt = excerptOf(answer)!
  t.notMatch(excerpt, /short|eyJ/, 'token members are redacted whatever their length')
  t.match(excerpt, /"token_type":"Bearer"/, 'other members stay readable')
  t.equal(excerptOf(Buffer.from('{"access_token":"abcdefghijklmnopqrstuvwxyz012345')), '{"access_token":"[redacted]"', 'a token cut off mid-string is still redacted')
  t.equal(excerptOf(Buffer.from('<html><body>Bad gateway: upstream abcdefghijklmnopqrstuvwxyz0123456789 down</body></html>')), '<html><body>Bad gateway: upstream [redacted] down</body></html>', 'long token-like runs in text')
  t.ok(excerptOf(Buffer.alloc(10_000, 'a '))!.length <= 201, 'short')
  t.equal(excerptOf(Buffer.alloc(0)), undefined)
})
