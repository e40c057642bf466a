// A stand-in for NeonPanel's MCP server: the official SDK's McpServer over a
// Streamable HTTP transport (stateless by default, or with sessions),
// protected by bearer tokens that are checked by RFC 7662 introspection at the
// stand-in upstream.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import * as z from 'zod'; // zod 4; the SDK accepts zod ^3.25 || ^4 schemas
import { closeServer, listen, readBody, sendJson } from './http.ts';

export interface McpServerOptions {
  port?: number;
  host?: string;
  /** Where and as whom to introspect bearer tokens (client_secret_basic unless told otherwise). */
  upstream: { introspectionEndpoint: string; clientId: string; clientSecret: string; method?: 'client_secret_basic' | 'client_secret_post' };
  /** RFC 9728 protected resource metadata URL named in 401 challenges. */
  resourceMetadataUrl: string;
  /** 401s without any WWW-Authenticate header, like an MCP server that predates RFC 9728. */
  omitChallenge?: boolean;
  /**
   * Stateful Streamable HTTP: the server sets Mcp-Session-Id at initialization,
   * keeps one transport per session, serves the GET event stream and ends the
   * session on DELETE. Default: stateless, POST only.
   */
  sessions?: boolean;
  /** Awaited before the `progress` tool sends each progress notification, so a test decides when each one leaves. */
  beforeProgress?: (step: number) => Promise<void>;
  /**
   * Name its own address in challenges, as an MCP server that knows nothing of the gateway
   * does: `resource_metadata` is <its origin>/.well-known/oauth-protected-resource/mcp, which
   * it serves itself (with its own URL as `resource`).
   */
  namesItself?: boolean;
  /**
   * A tool that needs one more scope than the others (stateless mode): calling it with a
   * token that lacks `scope` is answered 403 `insufficient_scope` naming every scope needed,
   * the token's and this one (MCP authorization, "Scope Challenge Handling").
   */
  stepUp?: { tool: string; scope: string };
  /** `scope` in its 401 challenges: the scopes a client should ask for first (MCP authorization, "Scope Selection Strategy"). */
  challengeScope?: string;
  /**
   * The SDK transport's DNS rebinding protection: a request whose Origin is not one of these
   * is answered 403 by the SDK, without a challenge (no token can lift it).
   */
  allowedOrigins?: string[];
}

/** One response as the stand-in wrote it, byte for byte (body only). */
export interface WrittenResponse {
  method: string;
  status: number;
  sessionId?: string;
  body(): Buffer;
}

export interface StandInMcpServer {
  /** e.g. http://127.0.0.1:PORT/mcp */
  url: string;
  /** Every /mcp response, in the order they started. */
  responses: WrittenResponse[];
  /** Requests for its own protected resource metadata (namesItself). */
  ownMetadataRequests: number;
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
  const responses: WrittenResponse[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const own = { url: '', metadataUrl: '' };
  const standIn: StandInMcpServer = {
    url: '',
    responses,
    ownMetadataRequests: 0,
    close: async () => {
      await Promise.all([...sessions.values()].map((transport) => transport.close()));
      await closeServer(server);
    },
  };
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://mcp.invalid').pathname;
    if (path === '/mcp') responses.push(recordBody(req, res));
    if (opts.namesItself && path === '/.well-known/oauth-protected-resource/mcp') {
      standIn.ownMetadataRequests++;
      sendJson(res, 200, { resource: own.url, authorization_servers: [], bearer_methods_supported: ['header'] });
      return;
    }
    const challengeUrl = opts.namesItself ? own.metadataUrl : opts.resourceMetadataUrl;
    handle(req, res, { ...opts, resourceMetadataUrl: challengeUrl }, sessions).catch((err: unknown) => sendServerError(res, err));
  });
  const port = await listen(server, opts.port ?? 0, host);
  own.url = `http://${host}:${port}/mcp`;
  own.metadataUrl = `http://${host}:${port}/.well-known/oauth-protected-resource/mcp`;
  standIn.url = own.url;
  return standIn;
}

/** Keeps a copy of every body byte written, whatever writes it (the SDK goes through @hono/node-server). */
function recordBody(req: IncomingMessage, res: ServerResponse): WrittenResponse {
  const chunks: Buffer[] = [];
  const keep = (chunk: unknown, encoding?: unknown) => {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : Buffer.from(chunk as Uint8Array));
  };
  const write = res.write.bind(res) as (...args: unknown[]) => boolean;
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  res.write = ((chunk: unknown, ...rest: unknown[]) => (keep(chunk, rest[0]), write(chunk, ...rest))) as typeof res.write;
  res.end = ((chunk?: unknown, ...rest: unknown[]) => (keep(chunk, rest[0]), end(chunk, ...rest))) as typeof res.end;
  const written: WrittenResponse = {
    method: req.method ?? 'GET',
    get status() {
      return res.statusCode;
    },
    body: () => Buffer.concat(chunks),
  };
  // The response's head as sent, whether by setHeader or by writeHead's own argument (as @hono/node-server does).
  res.once('finish', () => {
    const id = /^mcp-session-id: *(.+?)\r$/im.exec((res as unknown as { _header?: string })._header ?? '')?.[1];
    if (id) written.sessionId = id;
  });
  return written;
}

async function handle(req: IncomingMessage, res: ServerResponse, opts: McpServerOptions, sessions: Map<string, StreamableHTTPServerTransport>): Promise<void> {
  if (new URL(req.url ?? '/', 'http://mcp.invalid').pathname !== '/mcp') {
    sendJson(res, 404, { error: 'not_found' });
    return;
  }

  const challenge = opts.omitChallenge ? undefined : opts.resourceMetadataUrl;
  const token = bearerToken(req);
  if (token === undefined) {
    unauthorized(res, challenge, undefined, undefined, opts.challengeScope);
    return;
  }
  const introspection = await introspect(opts.upstream, token);
  // Refresh tokens introspect as active too, but carry no token_type; only access tokens may be used.
  if (!introspection.active || introspection.token_type !== 'Bearer' || !introspection.sub) {
    unauthorized(res, challenge, 'invalid_token', 'The access token is invalid or expired', opts.challengeScope);
    return;
  }
  if (opts.sessions) {
    await serveSession(req, res, introspection.sub, opts, sessions);
    return;
  }

  // Stateless mode only needs POST; GET (SSE stream) and DELETE (session end) are refused
  // the way the SDK's simpleStatelessStreamableHttp example does.
  if (req.method !== 'POST') {
    sendJson(res, 405, { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }, { allow: 'POST' });
    return;
  }
  // Read here only when a tool needs a scope; otherwise the SDK transport reads the body itself.
  const body: unknown = opts.stepUp ? JSON.parse((await readBody(req)) || 'null') : undefined;
  if (opts.stepUp && callsTool(body, opts.stepUp.tool) && !scopesOf(introspection).includes(opts.stepUp.scope)) {
    insufficientScope(res, opts.resourceMetadataUrl, [...new Set([...scopesOf(introspection), opts.stepUp.scope])], `The ${opts.stepUp.tool} tool needs the ${opts.stepUp.scope} scope`);
    return;
  }
  await serveMcp(req, res, introspection.sub, opts, body);
}

const scopesOf = (introspection: Introspection) => (introspection.scope ?? '').split(' ').filter(Boolean);

function callsTool(body: unknown, tool: string): boolean {
  const message = body as { method?: unknown; params?: { name?: unknown } } | null;
  return message?.method === 'tools/call' && message.params?.name === tool;
}

/** RFC 6750 §3.1 `insufficient_scope`, naming every scope the request needs (MCP authorization, "Scope Challenge Handling"). */
function insufficientScope(res: ServerResponse, resourceMetadataUrl: string, scopes: string[], description: string): void {
  sendJson(res, 403, { error: 'insufficient_scope', error_description: description }, {
    'www-authenticate': `Bearer error="insufficient_scope", scope="${scopes.join(' ')}", error_description="${description}", resource_metadata="${resourceMetadataUrl}"`,
  });
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
function unauthorized(res: ServerResponse, resourceMetadataUrl: string | undefined, error?: string, description?: string, scope?: string): void {
  const params = [
    ...(error ? [`error="${error}"`] : []),
    ...(description ? [`error_description="${description}"`] : []),
    ...(scope ? [`scope="${scope}"`] : []),
    `resource_metadata="${resourceMetadataUrl}"`,
  ];
  sendJson(
    res,
    401,
    { error: error ?? 'unauthorized', error_description: description ?? 'A bearer token is required' },
    resourceMetadataUrl === undefined ? {} : { 'www-authenticate': `Bearer ${params.join(', ')}` },
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
const originCheck = (opts: McpServerOptions) => (opts.allowedOrigins ? { enableDnsRebindingProtection: true, allowedOrigins: opts.allowedOrigins } : {});

async function serveMcp(req: IncomingMessage, res: ServerResponse, sub: string, opts: McpServerOptions, body?: unknown): Promise<void> {
  const server = buildServer(sub, opts);
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, ...originCheck(opts) });
  res.on('close', () => {
    void transport.close();
    void server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
}

/** One transport per session, as in the SDK's simpleStreamableHttp example; a request with an unknown session id gets 404. */
async function serveSession(
  req: IncomingMessage,
  res: ServerResponse,
  sub: string,
  opts: McpServerOptions,
  sessions: Map<string, StreamableHTTPServerTransport>,
): Promise<void> {
  const sessionId = req.headers['mcp-session-id'];
  let transport = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined;
  if (!transport) {
    if (sessionId !== undefined || req.method !== 'POST') {
      sendJson(res, sessionId === undefined ? 400 : 404, { jsonrpc: '2.0', error: { code: -32000, message: 'No such session.' }, id: null });
      return;
    }
    const created = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      ...originCheck(opts),
      onsessioninitialized: (id) => void sessions.set(id, created),
    });
    created.onclose = () => {
      if (created.sessionId) sessions.delete(created.sessionId);
    };
    await buildServer(sub, opts).connect(created);
    transport = created;
  }
  await transport.handleRequest(req, res);
}

function buildServer(sub: string, opts: McpServerOptions): McpServer {
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
  if (opts.stepUp) {
    server.registerTool(
      opts.stepUp.tool,
      { description: `Needs the ${opts.stepUp.scope} scope`, inputSchema: { text: z.string() } },
      ({ text }) => ({ content: [{ type: 'text', text: `saved ${text} for ${sub}` }] }),
    );
  }
  server.registerTool(
    'progress',
    { description: 'Reports progress `steps` times, then answers', inputSchema: { steps: z.number().int().min(1).max(20) } },
    async ({ steps }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let step = 1; step <= steps; step++) {
        await opts.beforeProgress?.(step);
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: step, total: steps, message: `step ${step} · ünïcödé ✓` } });
        }
      }
      return { content: [{ type: 'text', text: `done after ${steps} steps` }] };
    },
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
