import pino from 'pino'
import { Writable } from 'node:stream'
import t from 'tap'
import Fastify from 'fastify'
import { gatewayLogger, redactSecrets, RequestLog, RequestLogger } from '../../gateway/http/log.ts'
import { capturedLog } from '../support/log-capture.ts'

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

t.test("a request's logger makes its child only for a line that is written, and the line carries the request id", async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) })
  const parent = pino({ level: 'info' }, sink)
  let children = 0
  const child = parent.child.bind(parent)
  parent.child = ((...args: Parameters<typeof child>) => (children++, child(...args))) as typeof parent.child
  const log = new RequestLogger(parent, { reqId: 'r-1' }, {})
  log.debug({ step: 'metadata' }, 'below the level')
  t.equal(children, 0, 'a line below the level makes no child')
  t.equal(log.level, 'info')
  log.info({ step: 'token' }, 'written')
  log.warn('and another')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(children, 1, 'one child, made once')
  t.match(lines, [{ reqId: 'r-1', step: 'token', msg: 'written', level: 30 }, { reqId: 'r-1', msg: 'and another', level: 40 }])
  log.level = 'debug'
  log.debug('once the request lowers its own level')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(lines.length, 3, 'its child judges the level from then on')
})

t.test("the gateway's logger: Fastify's child per request is lazy, and a request is logged by its path", async (t) => {
  const log = capturedLog()
  const app = Fastify({ loggerInstance: gatewayLogger(log.logger), logController: new RequestLog() })
  let requestLog: unknown
  app.get('/x', async (request) => ((requestLog = request.log), 'ok'))
  t.teardown(() => app.close())
  const response = await app.inject('/x?code=secret-code-value')
  t.equal(response.statusCode, 200)
  t.type(requestLog, RequestLogger, 'the request got a lazy logger from the default child factory')
  const completed = log.parsed().filter((line) => line.msg === 'request completed')
  t.match(completed, [{ req: { method: 'GET', path: '/x' }, res: { statusCode: 200 }, reqId: String }])
  t.notMatch(log.lines.join('\n'), /secret-code-value/, 'the query string is never logged')
})
