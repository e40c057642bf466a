/**
 * The guarded fetcher against real sockets on loopback (development switch
 * on), and with a stand-in resolver where the test needs the public DNS to
 * answer something particular.
 */
import t from 'tap'
import type { LookupAddress } from 'node:dns'
import { createServer, type ServerResponse } from 'node:http'
import { createClientMetadataFetcher, FetchRefused, type FetcherOptions } from '../../gateway/upstream/document-fetcher.ts'
import { closeServer, listen } from '../support/http.ts'

const hits: string[] = []
const routes = new Map<string, (res: ServerResponse) => void>()
const server = createServer((req, res) => {
  hits.push(req.url!)
  const route = routes.get(req.url!)
  if (route) route(res)
  else res.writeHead(404).end()
})
const port = await listen(server, 0, '127.0.0.1')
const base = `http://127.0.0.1:${port}`
t.teardown(() => closeServer(server))

function fetcher(t: { teardown: (fn: () => Promise<void>) => void }, options: Partial<FetcherOptions> = {}) {
  const created = createClientMetadataFetcher({ timeoutMs: 500, allowLoopback: true, ...options })
  t.teardown(() => created.close())
  return created
}

routes.set('/doc', (res) => res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=30' }).end(JSON.stringify({ client_id: 'x' })))
routes.set('/big', (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ pad: 'x'.repeat(6000) })))
routes.set('/big-chunked', (res) => {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.write('{"pad":"')
  for (let i = 0; i < 10; i++) res.write('x'.repeat(1000))
  res.end('"}')
})
routes.set('/redirect', (res) => res.writeHead(302, { location: `${base}/doc` }).end())
routes.set('/html', (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>not json</html>'))
routes.set('/silent', () => undefined)
routes.set('/trickle', (res) => {
  res.writeHead(200, { 'content-type': 'application/json' })
  res.write('{"a":')
  const timer = setInterval(() => res.write(' '), 100)
  res.on('close', () => clearInterval(timer))
})

t.test('fetches JSON with its caching headers', async (t) => {
  const fetched = await fetcher(t).fetchJson(`${base}/doc`, 5120)
  t.same(fetched.json, { client_id: 'x' })
  t.equal(fetched.cacheControl, 'max-age=30')
  t.ok(fetched.date)
})

t.test('refusals name the reason', async (t) => {
  const guarded = fetcher(t)
  const cases: Array<[string, RegExp]> = [
    ['/big', /larger than 5120 bytes/],
    ['/big-chunked', /larger than 5120 bytes/],
    ['/redirect', /redirect \(HTTP 302\); redirects are not followed/],
    ['/missing', /answered HTTP 404 instead of 200/],
    ['/html', /not valid JSON/],
    ['/silent', /did not answer within 500 ms/],
    ['/trickle', /did not answer within 500 ms/],
  ]
  for (const [path, reason] of cases) {
    hits.length = 0
    await t.rejects(guarded.fetchJson(`${base}${path}`, 5120), { name: 'FetchRefused', message: reason }, path)
  }
  hits.length = 0
  await t.rejects(guarded.fetchJson(`${base}/redirect`, 5120), FetchRefused)
  t.same(hits, ['/redirect'], 'the redirect target is never requested')
})

t.test('without the development switch, loopback is refused, before or after DNS, and nothing connects', async (t) => {
  const strict = fetcher(t, { allowLoopback: false })
  hits.length = 0
  await t.rejects(strict.fetchJson(`${base}/doc`, 5120), { message: /https/ }, 'plain http')
  await t.rejects(strict.fetchJson(`https://127.0.0.1:${port}/doc`, 5120), { message: /special-use/ }, 'a loopback IP literal')
  await t.rejects(strict.fetchJson(`https://localhost:${port}/doc`, 5120), { message: /special-use/ }, 'a name that resolves to loopback')
  t.same(hits, [], 'no request reached the server')
})

t.test('the connection goes to the address the vetted lookup returned', async (t) => {
  const asked: string[] = []
  const answer = (addresses: LookupAddress[]): FetcherOptions['resolve'] => (hostname, _options, callback) => {
    asked.push(hostname)
    callback(null, addresses)
  }
  // A stand-in resolver answers for the public DNS. "localhost" keeps the URL an allowed development URL.
  const toLoopback = fetcher(t, { resolve: answer([{ address: '127.0.0.1', family: 4 }]) })
  t.same((await toLoopback.fetchJson(`http://localhost:${port}/doc`, 5120)).json, { client_id: 'x' })
  t.same(asked, ['localhost'], 'resolved by the fetcher itself')

  hits.length = 0
  const toPrivate = fetcher(t, { resolve: answer([{ address: '10.1.2.3', family: 4 }]) })
  await t.rejects(toPrivate.fetchJson(`http://localhost:${port}/doc`, 5120), { message: /special-use/ }, 'a private answer')
  const mixed = fetcher(t, { resolve: answer([{ address: '127.0.0.1', family: 4 }, { address: '169.254.169.254', family: 4 }]) })
  await t.rejects(mixed.fetchJson(`http://localhost:${port}/doc`, 5120), { message: /special-use/ }, 'one bad address among good ones')
  const empty = fetcher(t, { resolve: answer([]) })
  await t.rejects(empty.fetchJson(`http://localhost:${port}/doc`, 5120), FetchRefused, 'no address at all')
  t.same(hits, [], 'none of them connected')
})
