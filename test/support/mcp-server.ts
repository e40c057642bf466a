// A stand-in for NeonPanel's MCP server: the official SDK's McpServer over a
// stateless Streamable HTTP transport, protected by bearer tokens that are
// checked by RFC 7662 introspection at the stand-in upstream.
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import * as z from 'zod'; // zod 4; the SDK accepts zod ^3.25 || ^4 schemas
import { closeServer, listen, sendJson } from './http.ts';

export interface McpServerOptions {
  port?: number;
  host?: string;
  /** Where and as whom to introspect bearer tokens (client_secret_basic unless told otherwise). */
  upstream: { introspectionEndpoint: string; clientId: string; clientSecret: string; method?: 'client_secret_basic' | 'client_secret_post' };
  /** RFC 9728 protected resource metadata URL named in 401 challenges. */
  resourceMetadataUrl: string;
}

export interface StandInMcpServer {
  /** e.g. http://127.0.0.1:PORT/mcp */
  url: string;
  close(): Promise<void>;
}

/** The parts of an RFC 7662 §2.2 introspection response the stand-in reads. */
interface Introspection {
  active: boolean;
  sub?: string;
  client_id?: string;
  scope?: string;
  token_type?: string;
  exp?: number;
}

export async function startMcpServer(opts: McpServerOptions): Promise<StandInMcpServer> {
  const host = opts.host ?? '127.0.0.1';
  const server = createServer((req, res) => {
    handle(req, res, opts).catch((err: unknown) => sendServerError(res, err));
  });
  const port = await listen(server, opts.port ?? 0, host);
  return { url: `http://${host}:${port}/mcp`, close: () => closeServer(server) };
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: McpServerOptions): Promise<void> {
  if (new URL(req.url ?? '/', 'http://mcp.invalid').pathname !== '/mcp') {
    sendJson(res, 404, { error: 'not_found' });
    return;
  }

  const token = bearerToken(req);
  if (token === undefined) {
    unauthorized(res, opts.resourceMetadataUrl);
    return;
  }
  const introspection = await introspect(opts.upstream, token);
  // Refresh tokens introspect as active too, but carry no token_type; only access tokens may be used.
  if (!introspection.active || introspection.token_type !== 'Bearer' || !introspection.sub) {
    unauthorized(res, opts.resourceMetadataUrl, 'invalid_token', 'The access token is invalid or expired');
    return;
  }

  // Stateless mode only needs POST; GET (SSE stream) and DELETE (session end) are refused
  // the way the SDK's simpleStatelessStreamableHttp example does.
  if (req.method !== 'POST') {
    sendJson(res, 405, { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }, { allow: 'POST' });
    return;
  }
  await serveMcp(req, res, introspection.sub);
}

/** RFC 6750 §2.1: `Authorization: Bearer <token>`; the scheme is case-insensitive. */
function bearerToken(req: IncomingMessage): string | undefined {
  const match = /^Bearer +([\w\-.~+/]+=*) *$/i.exec(req.headers.authorization ?? '');
  return match?.[1];
}

/**
 * RFC 6750 §3 challenge plus RFC 9728 §5.1 `resource_metadata`. Per RFC 6750 §3.1 the
 * error attribute is omitted when the request carried no credentials at all.
 */
function unauthorized(res: ServerResponse, resourceMetadataUrl: string, error?: string, description?: string): void {
  const params = [
    ...(error ? [`error="${error}"`] : []),
    ...(description ? [`error_description="${description}"`] : []),
    `resource_metadata="${resourceMetadataUrl}"`,
  ];
  sendJson(
    res,
    401,
    { error: error ?? 'unauthorized', error_description: description ?? 'A bearer token is required' },
    { 'www-authenticate': `Bearer ${params.join(', ')}` },
  );
}

/** RFC 7662 §2.1 request, authenticated with client_secret_basic or client_secret_post (RFC 6749 §2.3.1). */
async function introspect(upstream: McpServerOptions['upstream'], token: string): Promise<Introspection> {
  const body = new URLSearchParams({ token, token_type_hint: 'access_token' });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (upstream.method === 'client_secret_post') {
    body.set('client_id', upstream.clientId);
    body.set('client_secret', upstream.clientSecret);
  } else {
    const credentials = `${encodeURIComponent(upstream.clientId)}:${encodeURIComponent(upstream.clientSecret)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
  }
  const response = await fetch(upstream.introspectionEndpoint, { method: 'POST', headers, body });
  if (!response.ok) {
    throw new Error(`introspection failed: HTTP ${response.status} ${await response.text()}`);
  }
  return (await response.json()) as Introspection;
}

/** A fresh server + transport per request, as in the SDK's stateless example. */
async function serveMcp(req: IncomingMessage, res: ServerResponse, sub: string): Promise<void> {
  const server = buildServer(sub);
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res);
}

function buildServer(sub: string): McpServer {
  const server = new McpServer({ name: 'neonpanel-mcp-standin', version: '1.0.0' });
  server.registerTool(
    'whoami',
    { description: 'Says which NeonPanel account the access token belongs to' },
    () => ({ content: [{ type: 'text', text: `signed in as ${sub}` }] }),
  );
  server.registerTool(
    'echo',
    { description: 'Echoes the given text', inputSchema: { text: z.string() } },
    ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  return server;
}

function sendServerError(res: ServerResponse, err: unknown): void {
  console.error('stand-in MCP server failed:', err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, 500, { jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null });
}
