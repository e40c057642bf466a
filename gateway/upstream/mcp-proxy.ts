/**
 * Front mode, outbound half: forwards one MCP request to the MCP server and
 * hands back its response as a stream. Nothing is buffered: the request body
 * flows to the MCP server as it arrives and the response body (JSON or an
 * SSE stream) flows back chunk by chunk. Its own undici Agent, because MCP
 * traffic is unlike OAuth calls: a tool call may take minutes before its
 * first byte, and an event stream may stay silent for as long as it is open.
 */
import type { Readable } from 'node:stream'
import { Agent, type Dispatcher } from 'undici'
import type { Config } from '../config/schema.ts'
import { translateMcpServerError } from './errors.ts'

export interface ProxyRequest {
  method: string
  /** The query string, with its `?`, or ''. */
  search: string
  headers: Record<string, string>
  /** The client's body, streamed; undefined when it sent none. */
  body: Readable | undefined
  /** Aborted when the client goes away: the MCP request is abandoned too. */
  signal: AbortSignal
}

export interface ProxyResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Dispatcher.ResponseData['body']
}

export interface McpProxy {
  /** Resolves once the MCP server's headers arrive; a failure before that is an OAuthError (502, 503, 504). */
  forward(request: ProxyRequest): Promise<ProxyResponse>
  /** Ends the open GET event streams (clients reconnect with Last-Event-ID), then lets the other requests finish. */
  close(): Promise<void>
}

export function createMcpProxy(front: Config['front']): McpProxy {
  const target = new URL(front.mcpUpstream!)
  const agent = new Agent({
    connect: { timeout: front.connectTimeoutMs },
    headersTimeout: front.headersTimeoutMs,
    bodyTimeout: front.idleTimeoutMs,
  })
  /** Open standalone event streams (GET), which would otherwise hold a shutdown forever. */
  const streams = new Set<AbortController>()

  return {
    async forward(request) {
      const abort = new AbortController()
      const onClientGone = () => abort.abort(request.signal.reason)
      request.signal.addEventListener('abort', onClientGone, { once: true })
      const tracked = request.method === 'GET'
      if (tracked) streams.add(abort)
      const forget = () => {
        streams.delete(abort)
        request.signal.removeEventListener('abort', onClientGone)
      }
      try {
        const response = await agent.request({
          origin: target.origin,
          path: target.pathname + request.search,
          method: request.method as 'GET',
          headers: request.headers,
          body: request.body ?? null,
          signal: abort.signal,
        })
        response.body.once('close', forget)
        return { status: response.statusCode, headers: response.headers, body: response.body }
      } catch (err) {
        forget()
        throw translateMcpServerError(err)
      }
    },

    async close() {
      for (const stream of streams) stream.abort(new Error('the gateway is shutting down'))
      await agent.close()
    },
  }
}
