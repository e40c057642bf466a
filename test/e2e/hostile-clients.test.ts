/**
 * Clients that are slow or send too much: the gateway cuts them off at its
 * configured timeouts and limits, always answering in the OAuth error shape,
 * and keeps serving everyone else.
 */
import t from 'tap'
import { connect, type Socket } from 'node:net'
import { registerClient } from '../support/gateway-flow.ts'
import { CHATGPT_REDIRECT, failsWith, startStack } from '../support/stack.ts'

const HEADERS_TIMEOUT_MS = 1000
const REQUEST_TIMEOUT_MS = 2000
/** Node checks its request timeouts on an interval; the gateway keeps it at a quarter of the headers timeout or less. */
const MARGIN_MS = 1000

const stack = await startStack({
  config: (file) => ({
    ...file,
    server: { headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS, connectionTimeoutMs: 5000, maxParameters: 100 },
  }),
})
t.teardown(() => stack.close())
const { port } = new URL(stack.gatewayUrl)

interface RawResult {
  /** Everything the server sent before it closed the connection. */
  received: string
  /** Milliseconds from the first byte sent until the connection closed. */
  closedAfter: number
}

/** Opens a raw connection, lets `feed` write to it, and waits until the server closes it (or 10 s pass). */
function rawExchange(feed: (socket: Socket) => void): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    const started = performance.now()
    let received = ''
    const give_up = setTimeout(() => {
      socket.destroy()
      reject(new Error(`the server kept the connection open; received ${JSON.stringify(received)}`))
    }, 10_000)
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => (received += chunk))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(give_up)
      resolve({ received, closedAfter: performance.now() - started })
    })
    socket.on('connect', () => feed(socket))
  })
}

/** Writes `text` one byte a second until the socket closes. */
function dripBytes(socket: Socket, text: string) {
  let i = 0
  const drip = () => {
    if (socket.destroyed || i >= text.length) return
    socket.write(text[i++]!)
    setTimeout(drip, 1000).unref()
  }
  drip()
}

/** The status line and the JSON body of a raw HTTP answer. */
function parseRaw(received: string) {
  const [head = '', body = ''] = received.split('\r\n\r\n')
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), head, body: body ? (JSON.parse(body) as { error?: string }) : {} }
}

t.test('a client that sends its headers one byte a second is cut off at the headers timeout', async (t) => {
  const { received, closedAfter } = await rawExchange((socket) => dripBytes(socket, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: ${'a'.repeat(100)}\r\n\r\n`))
  const answer = parseRaw(received)
  t.equal(answer.status, 408, 'answered 408')
  t.match(answer.head, /content-type: application\/json/i, 'as JSON')
  t.equal(answer.body.error, 'invalid_request', 'in the OAuth error shape')
  t.ok(closedAfter < HEADERS_TIMEOUT_MS + MARGIN_MS, `closed after ${Math.round(closedAfter)} ms`)
})

t.test('a client that never finishes its body is cut off at the request timeout', async (t) => {
  const { received, closedAfter } = await rawExchange((socket) => {
    socket.write(`POST /token HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=authorization_code&code=`)
  })
  const answer = parseRaw(received)
  t.equal(answer.status, 408, 'answered 408')
  t.equal(answer.body.error, 'invalid_request', 'in the OAuth error shape')
  t.ok(closedAfter < REQUEST_TIMEOUT_MS + MARGIN_MS, `closed after ${Math.round(closedAfter)} ms`)
})

t.test('a body that trickles in a byte a second is cut off at the request timeout', async (t) => {
  const { received, closedAfter } = await rawExchange((socket) => {
    socket.write(`POST /register HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n`)
    dripBytes(socket, `{"redirect_uris":["${CHATGPT_REDIRECT}"]}`.padEnd(500))
  })
  t.equal(parseRaw(received).status, 408, 'answered 408')
  t.ok(closedAfter < REQUEST_TIMEOUT_MS + MARGIN_MS, `closed after ${Math.round(closedAfter)} ms`)
})

t.test('oversized headers and malformed requests get the OAuth shape', async (t) => {
  const huge = parseRaw((await rawExchange((socket) => socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`))).received)
  t.equal(huge.status, 431, 'headers too large: 431')
  t.equal(huge.body.error, 'invalid_request')
  const garbage = parseRaw((await rawExchange((socket) => socket.write('NOT HTTP AT ALL\r\n\r\n'))).received)
  t.equal(garbage.status, 400, 'not HTTP: 400')
  t.equal(garbage.body.error, 'invalid_request')
})

t.test('a malformed URL goes through the error handler', async (t) => {
  await failsWith(t, await fetch(`${stack.gatewayUrl}/.well-known/oauth-protected-resource/%zz`), 400, 'invalid_request')
  await failsWith(t, await fetch(`${stack.gatewayUrl}/authorize%`), 400, 'invalid_request')
})

t.test('bodies are limited per endpoint', async (t) => {
  const bigRegistration = JSON.stringify({ redirect_uris: [CHATGPT_REDIRECT], client_name: 'x', padding: 'p'.repeat(20_000) })
  await failsWith(t, await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bigRegistration }), 413, 'invalid_request')
  const bigForm = new URLSearchParams({ grant_type: 'authorization_code', code: 'c'.repeat(40_000) })
  await failsWith(t, await fetch(`${stack.gatewayUrl}/token`, { method: 'POST', body: bigForm }), 413, 'invalid_request')
  await failsWith(t, await fetch(`${stack.gatewayUrl}/revoke`, { method: 'POST', body: bigForm }), 413, 'invalid_request')
  const page = await fetch(`${stack.gatewayUrl}/authorize`, { method: 'POST', body: bigForm })
  t.equal(page.status, 400, 'the browser endpoint answers with its error page')
  t.match(page.headers.get('content-type'), /^text\/html/)
  const normal = JSON.stringify({ redirect_uris: [CHATGPT_REDIRECT], client_name: 'x'.repeat(200), token_endpoint_auth_method: 'none' })
  t.equal((await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: normal })).status, 201, 'an ordinary registration fits')
})

t.test('more than the configured number of parameters is refused', async (t) => {
  const many = (n: number, name = (i: number) => `p${i}`) => Array.from({ length: n }, (_, i) => `${name(i)}=x`).join('&')
  await failsWith(t, await fetch(`${stack.gatewayUrl}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: many(101) }), 400, 'invalid_request')
  await failsWith(t, await fetch(`${stack.gatewayUrl}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: many(101, () => 'code') }), 400, 'invalid_request')
  const registration = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`field${i}`, i]))
  await failsWith(t, await fetch(`${stack.gatewayUrl}/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...registration, redirect_uris: [CHATGPT_REDIRECT] }) }), 400, 'invalid_request')
  const page = await fetch(`${stack.gatewayUrl}/authorize?${many(101, () => 'state')}`)
  t.equal(page.status, 400)
  t.match(page.headers.get('content-type'), /^text\/html/, 'the browser endpoint answers with its error page')
  t.match(await page.text(), /more than 100 parameters/)
  const ok = await fetch(`${stack.gatewayUrl}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: many(99) })
  await failsWith(t, ok, 401, 'invalid_client')
})

t.test('the gateway keeps serving after all of that', async (t) => {
  const client = await registerClient(stack.gatewayUrl, { redirect_uris: [CHATGPT_REDIRECT] })
  t.ok(client.client_id, 'a registration works')
  t.equal((await fetch(`${stack.gatewayUrl}/healthz`)).status, 200)
})
