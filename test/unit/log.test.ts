import t from 'tap'
import { redactSecrets } from '../../gateway/log.ts'

t.test('secret fields are redacted at the top of a line and one level down, and nothing else is touched', async (t) => {
  const nested = { client_secret: 's3cret', name: 'ChatGPT' }
  const fields = { authorization: 'Bearer abc', upstream: nested, step: 'token', list: [{ token: 'in an array' }] }
  const redacted = redactSecrets(fields)
  t.same(redacted, { authorization: '[redacted]', upstream: { client_secret: '[redacted]', name: 'ChatGPT' }, step: 'token', list: [{ token: 'in an array' }] })
  t.equal(fields.authorization, 'Bearer abc', "the caller's object is left as it was")
  t.equal(nested.client_secret, 's3cret', 'and so is the nested one')
})

t.test('a line without secrets is passed on as it is, not copied', async (t) => {
  const fields = { step: 'authorize', client: { name: 'Claude', handle: 'h1' } }
  t.equal(redactSecrets(fields), fields)
})

t.test('an error carrying a secret field keeps its message and stack', async (t) => {
  const err = Object.assign(new Error('refused'), { refresh_token: 'rt-123' })
  const redacted = redactSecrets({ err }).err as Record<string, unknown>
  t.equal(redacted.refresh_token, '[redacted]')
  t.equal(redacted.message, 'refused')
  t.match(redacted.stack, /refused/)
  t.equal(err.refresh_token, 'rt-123')
})
