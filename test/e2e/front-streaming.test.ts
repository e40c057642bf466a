/**
 * Front mode's proxy against a raw HTTP server that plays the MCP server
 * and decides exactly which bytes leave when: every event is written only
 * after the client has received the one before (so a buffering proxy would
 * deadlock and fail), headers must reach the client before any event exists,
 * and what arrives must be the same bytes that were written. Also: which
 * headers cross, the RFC 9728 challenge, CORS preflight, a client that goes
 * away, an MCP server that is down, and shutting down with a stream open.
 */
import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { Agent, fetch as undiciFetch } from 'undici'
import { buildGateway } from '../../gateway/app.ts'
import { parseConfig } from '../../gateway/config/load.ts'
import { closeServer, listen } from '../support/http.ts'
import { freePort } from '../support/ports.ts'
import { TEST_SECRET, gatewayFile } from '../support/stack.ts'

/** A promise with its resolver, to hand control back and forth between the test and the raw server. */
function signal<T = void>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((done) => (resolve = done))
  return { promise, resolve }
}

/** Fails the test instead of hanging when something that must happen does not (a buffering proxy). */
function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen: something buffered`)), ms)))
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

type Handler = (req: IncomingMessage, res: ServerResponse) => unknown

interface RawServer {
  url: string
  requests: Array<{ method: string; url: string; headers: IncomingMessage['headers'] }>
  handle(handler: Handler): void
  close(): Promise<void>
}

async function startRawServer(): Promise<RawServer> {
  let handler: Handler = (_req, res) => res.writeHead(500).end()
  const requests: RawServer['requests'] = []
  const server = createServer((req, res) => {
    requests.push({ method: req.method!, url: req.url!, headers: req.headers })
    void handler(req, res)
  })
  const port = await listen(server, 0, '127.0.0.1')
  return { url: `http://127.0.0.1:${port}/mcp`, requests, handle: (next) => (handler = next), close: () => closeServer(server) }
}

async function startFrontGateway(mcpUpstream: string): Promise<{ app: FastifyInstance; url: string }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const file = { ...gatewayFile(url, 'http://127.0.0.1:9', `${url}/mcp`), front: { enabled: true, mcpUpstream } }
  const app = await buildGateway({ config: parseConfig(file, { GATEWAY_SECRET: TEST_SECRET, UPSTREAM_CLIENT_SECRET: 'unused' }) })
  await app.listen({ port, host: '127.0.0.1' })
  return { app, url }
}

const raw = await startRawServer()
const front = await startFrontGateway(raw.url)
t.teardown(async () => {
  await front.app.close()
  await raw.close()
})
const mcpUrl = `${front.url}/mcp`

/** Reads from a body stream until `received` ends with `expected`. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, received: Buffer[], expected: Buffer) {
  while (!Buffer.concat(received).subarray(-expected.length).equals(expected)) {
    const { done, value } = await reader.read()
    if (done) throw new Error('the stream ended early')
    received.push(Buffer.from(value))
  }
}

t.test('an SSE stream passes byte for byte, each event before the next is written', async (t) => {
  const text = (value: string) => Buffer.from(value, 'utf8')
  const accent = text('é')
  // Events as the MCP server writes them, chunk by chunk: CRLF lines, a comment, retry and id
  // fields, and a two-byte UTF-8 character split across two chunks.
  const chunks = [
    text(': stream opened\r\n\r\n'),
    text('retry: 3000\nid: 42\nevent: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}\n\n'),
    Buffer.concat([text('id: 43\ndata: caf'), accent.subarray(0, 1)]),
    Buffer.concat([accent.subarray(1), text(' ✓\r\n\r\n')]),
    text('id: 44\ndata: {"jsonrpc":"2.0","id":7,"result":{}}\n\n'),
  ]
  const headersArrived = signal()
  const received: Buffer[] = []
  const progress = chunks.map(() => signal())
  const serverSaw = signal<IncomingMessage>()

  raw.handle(async (req, res) => {
    serverSaw.resolve(req)
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'mcp-session-id': 'session-1' })
    res.flushHeaders()
    await headersArrived.promise
    for (const [i, chunk] of chunks.entries()) {
      res.write(chunk)
      // The next chunk is written only once this one has reached the client through the gateway.
      await progress[i]!.promise
    }
    res.end()
  })

  const response = await within(
    fetch(`${mcpUrl}?stream=1`, {
      headers: {
        accept: 'text/event-stream',
        authorization: 'Bearer some-token',
        'mcp-session-id': 'session-1',
        'mcp-protocol-version': '2025-06-18',
        'last-event-id': '41',
        origin: 'https://inspector.example',
        cookie: 'session=secret',
        'x-internal': 'not for the MCP server',
      },
    }),
    'the response headers arriving before any event',
  )
  headersArrived.resolve()
  t.equal(response.status, 200)
  t.equal(response.headers.get('content-type'), 'text/event-stream')
  t.equal(response.headers.get('mcp-session-id'), 'session-1')
  t.equal(response.headers.get('x-accel-buffering'), 'no', 'tells an nginx ingress not to buffer')
  t.match(response.headers.get('access-control-expose-headers'), /Mcp-Session-Id/, 'browsers may read the session id')

  const reader = response.body!.getReader()
  for (const [i, chunk] of chunks.entries()) {
    const sent = Buffer.concat(chunks.slice(0, i + 1))
    await within(readUntil(reader, received, chunk), `chunk ${i + 1} arriving`)
    t.ok(Buffer.concat(received).equals(sent), `chunk ${i + 1} arrived, byte for byte, before chunk ${i + 2} was written`)
    progress[i]!.resolve()
  }
  t.equal((await reader.read()).done, true, 'the stream ends when the MCP server ends it')

  const request = await serverSaw.promise
  t.equal(request.url, '/mcp?stream=1', 'path and query reach the MCP server')
  t.match(request.headers, {
    authorization: 'Bearer some-token',
    'mcp-session-id': 'session-1',
    'mcp-protocol-version': '2025-06-18',
    'last-event-id': '41',
    accept: 'text/event-stream',
    origin: 'https://inspector.example',
    'x-forwarded-host': new URL(front.url).host,
    'x-forwarded-proto': 'http',
  })
  t.notOk(request.headers.cookie, 'cookies stay at the gateway')
  t.notOk(request.headers['x-internal'], 'unknown headers stay at the gateway')
})

t.test('a request body streams to the MCP server as it is sent', async (t) => {
  const firstPartSeen = signal<string>()
  raw.handle(async (req, res) => {
    let body = ''
    for await (const chunk of req) {
      body += String(chunk)
      if (!body.includes('second')) firstPartSeen.resolve(body)
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ got: body }))
  })

  let controller!: ReadableStreamDefaultController<Uint8Array>
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) })
  const pending = fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit)
  controller.enqueue(Buffer.from('{"first":1,'))
  t.equal(await within(firstPartSeen.promise, 'the first part reaching the MCP server'), '{"first":1,', 'the MCP server has the first part while the rest is unsent')
  controller.enqueue(Buffer.from('"second":2}'))
  controller.close()
  const response = await pending
  t.same(await response.json(), { got: '{"first":1,"second":2}' })
})

t.test('401s and 403s from the MCP server name the gateway\'s protected resource metadata', async (t) => {
  const metadata = `${front.url}/.well-known/oauth-protected-resource/mcp`
  const cases: Array<[number, string | undefined, string]> = [
    [401, undefined, `Bearer resource_metadata="${metadata}"`],
    [401, 'Bearer error="invalid_token"', `Bearer resource_metadata="${metadata}", error="invalid_token"`],
    [401, 'Bearer resource_metadata="https://elsewhere.example/x"', `Bearer resource_metadata="${metadata}"`],
    [403, 'Bearer error="insufficient_scope", scope="a b", resource_metadata="http://10.0.0.3/prm"', `Bearer error="insufficient_scope", scope="a b", resource_metadata="${metadata}"`],
  ]
  for (const [status, given, expected] of cases) {
    raw.handle((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json', ...(given ? { 'www-authenticate': given } : {}) }).end('{"error":"unauthorized"}')
    })
    const response = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://inspector.example' }, body: '{}' })
    t.equal(response.status, status)
    t.equal(response.headers.get('www-authenticate'), expected, `challenge ${given ?? '(none)'}`)
    t.match(response.headers.get('access-control-expose-headers'), /WWW-Authenticate/, 'browsers may read the challenge')
    t.equal(await response.text(), '{"error":"unauthorized"}', 'the body is unchanged')
  }
})

t.test('hop-by-hop and CORS headers of the MCP server stay behind', async (t) => {
  raw.handle((_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      connection: 'x-hop',
      'x-hop': 'internal',
      'keep-alive': 'timeout=5',
      'access-control-allow-origin': 'https://only.example',
      'x-mcp-server': 'kept',
    })
    res.end('{}')
  })
  const response = await fetch(mcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', origin: 'https://inspector.example' }, body: '{}' })
  t.equal(response.headers.get('x-hop'), null, 'a header named by Connection is dropped')
  t.equal(response.headers.get('x-mcp-server'), 'kept')
  t.equal(response.headers.get('access-control-allow-origin'), '*', 'the gateway answers CORS')
})

t.test('HEAD and 204 answers pass without a body', async (t) => {
  raw.handle((req, res) => {
    if (req.method === 'HEAD') res.writeHead(200, { 'content-type': 'text/event-stream', 'x-head': 'yes' }).end()
    else res.writeHead(204, { 'x-deleted': 'yes' }).end()
  })
  const head = await fetch(mcpUrl, { method: 'HEAD' })
  t.equal(head.status, 200)
  t.equal(head.headers.get('x-head'), 'yes')
  t.equal(raw.requests.at(-1)?.method, 'HEAD', 'HEAD reaches the MCP server as HEAD')
  const deleted = await fetch(mcpUrl, { method: 'DELETE', headers: { 'mcp-session-id': 's' } })
  t.equal(deleted.status, 204)
  t.equal(deleted.headers.get('x-deleted'), 'yes')
  t.equal(await deleted.text(), '')
  const after = await fetch(mcpUrl, { method: 'HEAD' })
  t.equal(after.status, 200, 'the gateway still answers')
})

t.test('OPTIONS preflight is answered without authentication and never reaches the MCP server', async (t) => {
  const before = raw.requests.length
  const response = await fetch(mcpUrl, {
    method: 'OPTIONS',
    headers: { origin: 'https://inspector.example', 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization, mcp-session-id, mcp-protocol-version, last-event-id' },
  })
  t.equal(response.status, 204)
  t.equal(response.headers.get('access-control-allow-origin'), '*')
  t.match(response.headers.get('access-control-allow-methods'), /DELETE/)
  for (const header of ['Authorization', 'Mcp-Session-Id', 'MCP-Protocol-Version', 'Last-Event-ID']) {
    t.match(response.headers.get('access-control-allow-headers'), new RegExp(header), `allows ${header}`)
  }
  t.equal(raw.requests.length, before, 'the MCP server saw nothing')
})

t.test('a client that goes away closes its stream at the MCP server', async (t) => {
  const closedAtServer = signal()
  raw.handle((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(': open\n\n')
    res.once('close', () => closedAtServer.resolve())
  })
  // Its own connection pool: after an abort, undici may leave a connection that never sends a
  // request, which the gateway's server would wait for (headersTimeout) when the file ends.
  const client = new Agent()
  t.teardown(() => client.destroy())
  const abort = new AbortController()
  const response = await undiciFetch(mcpUrl, { headers: { accept: 'text/event-stream' }, signal: abort.signal, dispatcher: client })
  await response.body!.getReader().read()
  abort.abort()
  await within(closedAtServer.promise, 'the MCP server seeing the stream close')
  t.pass('the stream closed at the MCP server')
})

t.test('an MCP server that is down is a 503 in the OAuth shape', async (t) => {
  const gateway = await startFrontGateway(`http://127.0.0.1:${await freePort()}/mcp`)
  t.teardown(() => gateway.app.close())
  const response = await fetch(`${gateway.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(response.status, 503)
  t.match(await response.json(), { error: 'temporarily_unavailable', error_description: 'the MCP server cannot be reached' })
})

t.test('shutting down ends open event streams instead of waiting for them', async (t) => {
  const server = await startRawServer()
  t.teardown(() => server.close())
  server.handle((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(': open\n\n')
  })
  const gateway = await startFrontGateway(server.url)
  const response = await fetch(`${gateway.url}/mcp`, { headers: { accept: 'text/event-stream' } })
  const reader = response.body!.getReader()
  await reader.read()
  await within(gateway.app.close(), 'the gateway closing')
  await t.rejects(reader.read(), 'the client sees its stream cut, and reconnects elsewhere')
})
