/**
 * An HTTP proxy between the gateway and the stand-in upstream that breaks the
 * upstream's token endpoint on demand. Everything else (discovery, the
 * sign-in pages, introspection) passes through untouched; requests to the
 * faulted path get the chosen misbehaviour, built from the upstream's real
 * answer where the fault is a damaged answer.
 */
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { closeServer, listen } from './http.ts'

export type Fault =
  /** Passes through. */
  | 'none'
  /** Reads the request and never answers. */
  | 'no-answer'
  /** A 500 with an HTML error page, as a web server in front of the upstream sends. */
  | 'html-500'
  /** A 503 maintenance page, as a load balancer in front of the upstream sends. */
  | 'html-503'
  /** 200, application/json, a body that is not JSON. */
  | 'invalid-json'
  /** The real answer, with its Content-Length, cut off halfway by a clean close. */
  | 'truncated-json'
  /** The real answer's headers and half its body, then a TCP reset. */
  | 'reset-mid-body'
  /** The real answer, one byte every `trickleMs`. */
  | 'trickle'
  /** 200, application/json, chunked, 64 MiB of JSON as fast as the reader takes it. */
  | 'oversized'
  /** 200, application/json, declaring 64 MiB in Content-Length. */
  | 'oversized-declared'
  /** 400, application/json, an error body without the `error` member. */
  | 'json-without-error'
  /** 400 with a real OAuth error, which the gateway passes on. */
  | 'oauth-error'

export interface FaultProxy {
  /** The origin the gateway and the browser use for the upstream. */
  url: string
  /** Where requests go: the upstream's real address. */
  setTarget(origin: string): void
  /** Applies `fault` to every request for `path` (the token endpoint by default) from now on. */
  inject(fault: Fault, options?: { path?: string; trickleMs?: number }): void
  /** Requests the current fault has been applied to. */
  readonly faulted: number
  /** Bytes of body the proxy wrote for faulted requests. */
  readonly bytesSent: number
  /** Stops listening and drops every connection: the next connection is refused. */
  refuse(): Promise<void>
  /** Listens again on the same port. */
  accept(): Promise<void>
  close(): Promise<void>
}

const OVERSIZED_BYTES = 64 * 1024 * 1024

export async function startFaultProxy(host = '127.0.0.1'): Promise<FaultProxy> {
  let target = ''
  let fault: Fault = 'none'
  let faultPath = '/token'
  let trickleMs = 1000
  let faulted = 0
  let bytesSent = 0
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()

  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://proxy').pathname
    if (fault === 'none' || req.method !== 'POST' || path !== faultPath) return forward(req, res)
    faulted++
    applyFault(req, res).catch((err: unknown) => {
      console.error('fault proxy failed:', err)
      res.destroy()
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const port = await listen(server, 0, host)

  function forward(req: IncomingMessage, res: ServerResponse) {
    const upstream = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  }

  /** The upstream's real answer to this request, read whole. */
  function realAnswer(req: IncomingMessage): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const upstream = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
        const chunks: Buffer[] = []
        answer.on('data', (chunk: Buffer) => chunks.push(chunk))
        answer.on('end', () => resolve({ status: answer.statusCode ?? 502, headers: answer.headers, body: Buffer.concat(chunks) }))
        answer.on('error', reject)
      })
      upstream.on('error', reject)
      req.pipe(upstream)
    })
  }

  function send(res: ServerResponse, status: number, contentType: string, body: string) {
    bytesSent += Buffer.byteLength(body)
    res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }

  function later(ms: number, work: () => void) {
    const timer = setTimeout(() => {
      timers.delete(timer)
      work()
    }, ms)
    timers.add(timer)
  }

  async function applyFault(req: IncomingMessage, res: ServerResponse) {
    switch (fault) {
      case 'no-answer':
        req.resume()
        return
      case 'html-500':
        req.resume()
        return send(res, 500, 'text/html; charset=utf-8', '<!doctype html><html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1><p>nginx</p></body></html>')
      case 'html-503':
        req.resume()
        return send(res, 503, 'text/html', '<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>')
      case 'invalid-json':
        req.resume()
        return send(res, 200, 'application/json', '{"access_token": "half-a-token", "token_type": Bearer, }')
      case 'json-without-error':
        req.resume()
        return send(res, 400, 'application/json', '{"message":"Bad Request","statusCode":400}')
      case 'oauth-error':
        req.resume()
        return send(res, 400, 'application/json', '{"error":"invalid_grant","error_description":"grant request is invalid"}')
      case 'truncated-json': {
        const answer = await realAnswer(req)
        const half = answer.body.subarray(0, Math.floor(answer.body.length / 2))
        res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': answer.body.length })
        bytesSent += half.length
        res.write(half, () => res.socket?.end())
        return
      }
      case 'reset-mid-body': {
        const answer = await realAnswer(req)
        const half = answer.body.subarray(0, Math.floor(answer.body.length / 2))
        res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': answer.body.length })
        bytesSent += half.length
        res.write(half, () => later(50, () => res.socket?.resetAndDestroy()))
        return
      }
      case 'trickle': {
        const answer = await realAnswer(req)
        res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': answer.body.length })
        res.flushHeaders()
        let offset = 0
        const drip = () => {
          if (res.destroyed || offset >= answer.body.length) return res.end()
          bytesSent++
          res.write(answer.body.subarray(offset, ++offset))
          later(trickleMs, drip)
        }
        later(trickleMs, drip)
        return
      }
      case 'oversized': {
        req.resume()
        res.writeHead(200, { 'content-type': 'application/json' })
        const chunk = Buffer.alloc(64 * 1024, 'a')
        res.write('{"access_token":"')
        const pump = () => {
          while (!res.destroyed && bytesSent < OVERSIZED_BYTES) {
            bytesSent += chunk.length
            if (!res.write(chunk)) return void res.once('drain', pump)
          }
          if (!res.destroyed) res.end('","token_type":"Bearer"}')
        }
        pump()
        return
      }
      case 'oversized-declared':
        req.resume()
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': OVERSIZED_BYTES })
        res.write('{"access_token":"')
        return
      case 'none':
        return forward(req, res)
    }
  }

  return {
    url: `http://${host}:${port}`,
    setTarget(origin) {
      target = origin
    },
    inject(next, options = {}) {
      fault = next
      faultPath = options.path ?? '/token'
      trickleMs = options.trickleMs ?? 1000
      faulted = 0
      bytesSent = 0
    },
    get faulted() {
      return faulted
    },
    get bytesSent() {
      return bytesSent
    },
    async refuse() {
      for (const socket of sockets) socket.destroy()
      if (server.listening) await closeServer(server)
    },
    async accept() {
      if (!server.listening) await listen(server, port, host)
    },
    async close() {
      for (const timer of timers) clearTimeout(timer)
      for (const socket of sockets) socket.destroy()
      if (server.listening) await closeServer(server)
    },
  }
}
