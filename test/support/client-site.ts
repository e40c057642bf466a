/**
 * A site the tests serve on loopback: the client's redirect URI (so a real
 * browser can land on it), a client's metadata document and keys, or an
 * attacker's page. Each path answers what the test says; every request is
 * recorded.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { closeServer, listen, sendHtml } from './http.ts'

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>

export interface ClientSite {
  /** http://<host>:<port>, no trailing slash. */
  url: string
  /** Paths requested, in order (with the query string). */
  hits: string[]
  on(path: string, handler: Handler): void
  /** Serves a JSON body with the given headers. */
  json(path: string, body: unknown, headers?: Record<string, string>): void
  close(): Promise<void>
}

/**
 * `hostname` is the name in the site's URL; `localhost` makes a site that is
 * cross-site to the gateway on 127.0.0.1 (a different host is a different site).
 */
export async function startClientSite(options: { hostname?: string } = {}): Promise<ClientSite> {
  const handlers = new Map<string, Handler>()
  const hits: string[] = []
  const server = createServer((req, res) => {
    hits.push(req.url ?? '/')
    const handler = handlers.get((req.url ?? '/').split('?')[0]!)
    if (!handler) return sendHtml(res, 404, 'not found')
    Promise.resolve(handler(req, res)).catch(() => res.destroy())
  })
  const port = await listen(server, 0, '127.0.0.1')
  return {
    url: `http://${options.hostname ?? '127.0.0.1'}:${port}`,
    hits,
    on: (path, handler) => void handlers.set(path, handler),
    json(path, body, headers = {}) {
      handlers.set(path, (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', ...headers })
        res.end(JSON.stringify(body))
      })
    },
    close: () => closeServer(server),
  }
}

/** A redirect URI page: what the client shows when the browser comes back. */
export function landingPage(_req: IncomingMessage, res: ServerResponse) {
  sendHtml(res, 200, '<!doctype html><title>Back at the app</title><h1>Back at the app</h1>')
}
