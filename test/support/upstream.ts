// A stand-in for NeonPanel's OAuth server (my.neonpanel.com), built on the
// real oidc-provider and served by plain node:http. Only the sign-in page is
// ours; everything protocol-related is oidc-provider's own behaviour.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import Provider, { errors } from 'oidc-provider';
import type { Account, ClientView, Configuration, Interaction, JWK, KoaContext } from 'oidc-provider';
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';
import { closeServer, escapeHtml, listen, readBody, sendHtml, sendJson } from './http.ts';

export interface UpstreamOptions {
  port?: number;
  host?: string;
  /** Mount the provider under a path, e.g. '/oauth' → issuer http://host:port/oauth. */
  issuerPath?: string;
  /** The gateway's callback URL(s), registered for the gateway's client. */
  redirectUris: string[];
  tokenAuthMethod?: 'client_secret_basic' | 'client_secret_post';
  /**
   * What the metadata lists as token_endpoint_auth_methods_supported (oidc-provider's
   * `clientAuthMethods`); by default every method oidc-provider knows, whatever is enforced.
   */
  advertisedAuthMethods?: Array<'client_secret_basic' | 'client_secret_post'>;
  /** Access token lifetime in seconds. */
  accessTokenTtl?: number;
  /**
   * The origin clients reach it at when something sits in front of it (a fault-injecting
   * proxy): the issuer names it, while the server listens on its own port.
   */
  publicOrigin?: string;
  /**
   * Dynamic client registration (RFC 7591, at `<issuer>/reg`) and its management
   * (RFC 7592), off by default. `initialAccessToken` makes registration require
   * that bearer token (RFC 7591 §3).
   */
  registration?: boolean | { initialAccessToken?: string };
  /** false: every /.well-known/ path answers 404 HTML, as an upstream without discovery does. */
  discovery?: boolean;
  /** Spell the issuer with a trailing slash (metadata, `iss`, ID tokens), as some servers do. */
  issuerTrailingSlash?: boolean;
  /** Token and revocation errors come back as an HTML page with the same status, as from a proxy or framework error page. */
  htmlErrors?: boolean;
  /** Token and revocation OAuth errors come back (still JSON) with this HTTP status, e.g. 500. */
  errorStatus?: number;
  /** `expires_in` in token responses as a string, as Entra sends it. */
  stringExpiresIn?: boolean;
  /** Issue refresh tokens only when offline_access was granted: oidc-provider's default (NeonPanel issues them always). */
  refreshTokensNeedOfflineAccess?: boolean;
  /** Scopes beyond the OIDC ones, e.g. 'neonpanel.api'. */
  extraScopes?: string[];
  /** false: no revocation endpoint (RFC 7009), so the metadata names none. */
  revocation?: boolean;
  /** RFC 8707 resource indicators the upstream accepts; any other (and, without this, every one) is invalid_target. */
  resources?: string[] | ((resource: string) => boolean);
}

/** A request the upstream received at its authorization, token or revocation endpoint (client_secret left out). */
export interface RecordedRequest {
  method: string;
  /** Relative to the issuer, e.g. '/auth', '/token'. */
  path: string;
  params: Record<string, string>;
  clientAuth: 'basic' | 'post' | 'none';
  status: number;
}

export interface StandInUpstream {
  issuer: string;
  /** Where the server itself listens (http://host:port), whatever the issuer says. */
  address: string;
  clientId: string;
  clientSecret: string;
  /** A second confidential client the MCP stand-in uses for RFC 7662 introspection. */
  introspection: { clientId: string; clientSecret: string; method: 'client_secret_basic' | 'client_secret_post' };
  account: { username: string; password: string };
  provider: Provider;
  /** Every authorization, token and revocation request, in order. */
  requests: RecordedRequest[];
  /** Every request received, as `METHOD path` (no query), in order. */
  requestLines: string[];
  close(): Promise<void>;
}

const ACCOUNT = { username: 'demo@neonpanel.test', password: 'neonpanel-demo' };
/** The `sub` of the test account: opaque, deliberately not the email. */
const ACCOUNT_ID = 'np-user-1001';
const GATEWAY_CLIENT = { clientId: 'neonpanel-mcp-gateway', clientSecret: 'gateway-client-secret-for-tests' };
const INTROSPECTION_CLIENT = { clientId: 'neonpanel-mcp-server', clientSecret: 'mcp-server-secret-for-tests' };
/** Fixed so cookie signatures are reproducible; only ever used on 127.0.0.1. */
const COOKIE_KEYS = ['standin-upstream-cookie-key-0001'];
const DAY = 24 * 60 * 60;

export async function startUpstream(opts: UpstreamOptions): Promise<StandInUpstream> {
  const host = opts.host ?? '127.0.0.1';
  const issuerPath = normalizeIssuerPath(opts.issuerPath ?? '');

  // Listen first: the issuer must contain the real port before the Provider exists.
  const server = createServer();
  const port = await listen(server, opts.port ?? 0, host);
  const address = `http://${host}:${port}`;
  const issuer = `${opts.publicOrigin ?? address}${issuerPath}${opts.issuerTrailingSlash ? '/' : ''}`;

  // PKCE challenges of authorization requests that asked for offline_access (see refreshTokensNeedOfflineAccess).
  const offlineRequested = new Set<string>();
  const provider = new Provider(issuer, providerConfiguration(opts, issuerPath, offlineRequested));
  const requests: RecordedRequest[] = [];
  provider.use(recordRequests(requests, offlineRequested));
  provider.use(quirks(opts));
  const authMethod = opts.tokenAuthMethod ?? 'client_secret_basic';
  const requestLines: string[] = [];
  const handler = createRequestHandler(provider, issuerPath, authMethod, opts.discovery ?? true);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    requestLines.push(`${req.method} ${splitQuery(req.url ?? '/')[0]}`);
    handler(req, res);
  });

  return {
    issuer,
    address,
    ...GATEWAY_CLIENT,
    introspection: { ...INTROSPECTION_CLIENT, method: introspectionAuthMethod(opts) },
    account: { ...ACCOUNT },
    provider,
    requests,
    requestLines,
    close: () => closeServer(server),
  };
}

/** The introspection client authenticates with a method the upstream advertises. */
function introspectionAuthMethod(opts: UpstreamOptions): 'client_secret_basic' | 'client_secret_post' {
  const advertised = opts.advertisedAuthMethods;
  return !advertised || advertised.includes('client_secret_basic') ? 'client_secret_basic' : 'client_secret_post';
}

const RECORDED_PATHS = new Set(['/auth', '/token', '/token/revocation']);

/** Koa middleware: records what reached the authorization, token and revocation endpoints. */
function recordRequests(requests: RecordedRequest[], offlineRequested: Set<string>) {
  return async (ctx: KoaContext, next: () => Promise<void>): Promise<void> => {
    if (ctx.path === '/auth' && String(ctx.query.scope ?? '').split(' ').includes('offline_access')) {
      offlineRequested.add(String(ctx.query.code_challenge));
    }
    await next();
    if (!RECORDED_PATHS.has(ctx.path)) return;
    const source = ctx.method === 'POST' ? (ctx.oidc?.body ?? {}) : ctx.query;
    const params: Record<string, string> = {};
    for (const [name, value] of Object.entries(source)) {
      if (name !== 'client_secret') params[name] = Array.isArray(value) ? value.join(',') : String(value);
    }
    const basic = /^basic /i.test(ctx.headers.authorization ?? '');
    const clientAuth = basic ? 'basic' : 'client_secret' in source ? 'post' : 'none';
    requests.push({ method: ctx.method, path: ctx.path, params, clientAuth, status: ctx.status });
  };
}

/**
 * Koa middleware for the quirks of real upstreams, applied to what
 * oidc-provider answered: OAuth errors as HTML or with another status,
 * `expires_in` as a string.
 */
function quirks(opts: UpstreamOptions) {
  return async (ctx: KoaContext, next: () => Promise<void>): Promise<void> => {
    await next();
    if (ctx.path !== '/token' && ctx.path !== '/token/revocation') return;
    const body = ctx.body as { error?: string; error_description?: string; expires_in?: unknown } | undefined;
    if (body?.error) {
      const status = opts.errorStatus ?? ctx.status;
      if (opts.htmlErrors) {
        ctx.type = 'text/html; charset=utf-8';
        ctx.body = `<!doctype html><html><head><title>Error</title></head><body><h1>Something went wrong</h1><p>${escapeHtml(body.error_description ?? body.error)}</p></body></html>`;
      }
      ctx.status = status;
    } else if (opts.stringExpiresIn && typeof body?.expires_in === 'number') {
      ctx.body = { ...body, expires_in: String(body.expires_in) };
    }
  };
}

function normalizeIssuerPath(path: string): string {
  if (path === '' || path === '/') return '';
  if (!path.startsWith('/')) throw new Error(`issuerPath must start with "/": ${path}`);
  return path.replace(/\/+$/, '');
}

function providerConfiguration(opts: UpstreamOptions, issuerPath: string, offlineRequested: Set<string>): Configuration {
  return {
    // Passing the factory explicitly (same store oidc-provider defaults to) silences its
    // "development-only in-memory adapter" warning; each provider gets its own store.
    adapter: createMemoryAdapter(),
    jwks: { keys: [signingKey()] },
    ...(opts.advertisedAuthMethods ? { clientAuthMethods: opts.advertisedAuthMethods } : {}),
    clients: [
      {
        client_id: GATEWAY_CLIENT.clientId,
        client_secret: GATEWAY_CLIENT.clientSecret,
        redirect_uris: opts.redirectUris,
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        // Recorded, but oidc-provider accepts basic and post interchangeably for either
        // value; enforceAuthMethod() below makes the registered method binding.
        token_endpoint_auth_method: opts.tokenAuthMethod ?? 'client_secret_basic',
      },
      {
        // Resource-server client: it only calls the introspection endpoint.
        client_id: INTROSPECTION_CLIENT.clientId,
        client_secret: INTROSPECTION_CLIENT.clientSecret,
        redirect_uris: [],
        grant_types: [],
        response_types: [],
        token_endpoint_auth_method: introspectionAuthMethod(opts),
      },
    ],
    // Cookies: not Secure unless the request is https (ctx.secure), so plain http works.
    // With keys set they are signed (koa `cookies` signs by default when keys exist).
    cookies: { keys: COOKIE_KEYS },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: opts.revocation ?? true, allowedPolicy: revocationAllowed },
      introspection: { enabled: true, allowedPolicy: introspectionAllowed },
      registration: registrationFeature(opts.registration),
      registrationManagement: { enabled: Boolean(opts.registration) },
      // Enabled, as by default. Without `resources`, every `resource` is invalid_target
      // (oidc-provider's default getResourceServerInfo); with it, those resources are known.
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: resourceServerInfo(opts.resources ?? []),
      },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', ...(opts.extraScopes ?? [])],
    claims: {
      acr: null, sid: null, auth_time: null, iss: null,
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    findAccount,
    interactions: { url: (_ctx, interaction) => `${issuerPath}/interaction/${interaction.uid}` },
    // Default only issues one when `offline_access` was granted, and oidc-provider drops
    // offline_access unless prompt=consent (OIDC Core §11). NeonPanel issues them always.
    // With refreshTokensNeedOfflineAccess: only when the authorization request asked for offline_access
    // (oidc-provider itself would also drop it without prompt=consent, which no MCP flow sends).
    issueRefreshToken: (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && (!opts.refreshTokensNeedOfflineAccess || offlineRequested.has(String((code as { codeChallenge?: string }).codeChallenge))),
    // Default rotates only public clients, or confidential ones after 70% of the RT's
    // lifetime. Always rotating is the stricter case for the gateway: the old RT is
    // consumed, and replaying it revokes the whole grant (OAuth 2.1 §4.3.1).
    rotateRefreshToken: true,
    ttl: {
      AccessToken: opts.accessTokenTtl ?? 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * DAY,
      Interaction: 3600,
      Session: 14 * DAY,
      Grant: 14 * DAY,
    },
  };
}

function registrationFeature(option: UpstreamOptions['registration']) {
  if (!option) return { enabled: false };
  const initialAccessToken = typeof option === 'object' ? option.initialAccessToken : undefined;
  return { enabled: true, initialAccessToken: initialAccessToken ?? false };
}

/** RFC 8707: known resources get opaque access tokens with the `api` scope; anything else is invalid_target. */
function resourceServerInfo(resources: string[] | ((resource: string) => boolean)) {
  const known = typeof resources === 'function' ? resources : (resource: string) => resources.includes(resource);
  return (_ctx: unknown, resource: string) => {
    if (!known(resource)) throw new errors.InvalidTarget();
    return { scope: 'api', accessTokenFormat: 'opaque', audience: resource };
  };
}

/**
 * The default policy, stated explicitly to silence oidc-provider's "you SHOULD change"
 * notice on every introspection: public clients may only introspect their own tokens.
 */
function introspectionAllowed(_ctx: unknown, client: ClientView, token: { clientId?: string }): boolean {
  return client.clientAuthMethod !== 'none' || token.clientId === client.clientId;
}

/**
 * Stated explicitly to silence oidc-provider's "you SHOULD change" notice on every
 * revocation: a client revokes only its own tokens (another's is ignored, RFC 7009 §2.1).
 */
function revocationAllowed(_ctx: unknown, client: ClientView, token: { clientId?: string }): boolean {
  return token.clientId === client.clientId;
}

/** A fresh RS256 key per upstream (RS256 is the default id_token_signed_response_alg). */
function signingKey(): JWK {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...(privateKey.export({ format: 'jwk' }) as JWK), kid: 'standin-rs256', alg: 'RS256', use: 'sig' };
}

function findAccount(_ctx: unknown, sub: string): Account | undefined {
  if (sub !== ACCOUNT_ID) return undefined;
  return {
    accountId: ACCOUNT_ID,
    claims: () => ({ sub: ACCOUNT_ID, email: ACCOUNT.username, email_verified: true, name: 'NeonPanel Demo' }),
  };
}

type MountableRequest = IncomingMessage & { originalUrl?: string; baseUrl?: string };

type TokenAuthMethod = NonNullable<UpstreamOptions['tokenAuthMethod']>;

function createRequestHandler(provider: Provider, issuerPath: string, authMethod: TokenAuthMethod, discovery: boolean) {
  const providerCallback = provider.callback();
  const interactions = createInteractionHandlers(provider, issuerPath);

  return (req: MountableRequest, res: ServerResponse): void => {
    const rawUrl = rfc8414Alias(req.url ?? '/', issuerPath);
    const local = pathUnderMount(rawUrl, issuerPath);
    if (local === undefined || (!discovery && splitQuery(rawUrl)[0].includes('/.well-known/'))) {
      sendHtml(res, 404, 'not found');
      return;
    }
    if (!clientAuthAllowed(req, local, authMethod)) {
      sendJson(res, 401, {
        error: 'invalid_client',
        error_description: `the client must authenticate with ${authMethod}`,
      });
      return;
    }
    if (interactions.handles(req.method, local)) {
      interactions.handle(req, res, local).catch((err: unknown) => sendInteractionError(res, err));
      return;
    }
    // Mimic Express mounting, which oidc-provider understands: it derives the mount path
    // from originalUrl vs url (or baseUrl) when building endpoint URLs.
    req.originalUrl = rawUrl;
    req.baseUrl = issuerPath;
    req.url = local;
    void providerCallback(req, res);
  };
}

/**
 * Only the gateway's client calls the token and revocation endpoints, so the presence of
 * an `Authorization: Basic` header tells which method it used (RFC 6749 §2.3.1).
 */
function clientAuthAllowed(req: IncomingMessage, local: string, authMethod: TokenAuthMethod): boolean {
  const [path] = splitQuery(local);
  if (req.method !== 'POST' || (path !== '/token' && path !== '/token/revocation')) return true;
  const usedBasic = /^basic /i.test(req.headers.authorization ?? '');
  return usedBasic === (authMethod === 'client_secret_basic');
}

/**
 * oidc-provider serves /.well-known/oauth-authorization-server relative to its mount
 * (i.e. <issuer>/.well-known/…), but RFC 8414 §3.1 inserts the well-known segment
 * *before* the issuer's path: /.well-known/oauth-authorization-server/oauth.
 * Rewrite that form to the mounted route so the provider answers it.
 */
function rfc8414Alias(rawUrl: string, issuerPath: string): string {
  const wellKnown = '/.well-known/oauth-authorization-server';
  if (!issuerPath) return rawUrl;
  const [path, query] = splitQuery(rawUrl);
  return path === `${wellKnown}${issuerPath}` ? `${issuerPath}${wellKnown}${query}` : rawUrl;
}

/** The URL relative to the mount point, or undefined when outside it. */
function pathUnderMount(rawUrl: string, issuerPath: string): string | undefined {
  if (!issuerPath) return rawUrl;
  const [path] = splitQuery(rawUrl);
  if (path !== issuerPath && !path.startsWith(`${issuerPath}/`)) return undefined;
  const rest = rawUrl.slice(issuerPath.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

function splitQuery(rawUrl: string): [path: string, query: string] {
  const i = rawUrl.indexOf('?');
  return i === -1 ? [rawUrl, ''] : [rawUrl.slice(0, i), rawUrl.slice(i)];
}

// --- sign-in interaction -----------------------------------------------------

const INTERACTION_ROUTE = /^\/interaction\/([\w-]+)(\/login)?$/;

function createInteractionHandlers(provider: Provider, issuerPath: string) {
  function route(method: string | undefined, local: string) {
    const match = INTERACTION_ROUTE.exec(splitQuery(local)[0]);
    if (!match?.[1]) return undefined;
    const isLogin = match[2] !== undefined;
    if (method === 'GET' && !isLogin) return { uid: match[1], action: 'show' as const };
    if (method === 'POST' && isLogin) return { uid: match[1], action: 'login' as const };
    return undefined;
  }

  async function details(req: IncomingMessage, res: ServerResponse, uid: string): Promise<Interaction> {
    const interaction = await provider.interactionDetails(req, res);
    if (interaction.uid !== uid) throw new InteractionError(400, 'interaction does not match the sign-in cookie');
    return interaction;
  }

  async function show(req: IncomingMessage, res: ServerResponse, uid: string): Promise<void> {
    const interaction = await details(req, res, uid);
    if (interaction.prompt.name === 'login') {
      sendHtml(res, 200, signInPage(loginAction(issuerPath, uid)));
      return;
    }
    if (interaction.prompt.name !== 'consent' || !interaction.session) {
      throw new InteractionError(400, `unsupported prompt: ${interaction.prompt.name}`);
    }
    // Auto-consent: grant whatever oidc-provider reports as missing.
    const grantId = await saveGrant(provider, interaction, interaction.session.accountId);
    await provider.interactionFinished(req, res, { consent: { grantId } });
  }

  async function login(req: IncomingMessage, res: ServerResponse, uid: string): Promise<void> {
    const form = new URLSearchParams(await readBody(req));
    const interaction = await details(req, res, uid);
    if (interaction.prompt.name !== 'login') throw new InteractionError(400, 'not waiting for sign-in');
    if (form.get('username') !== ACCOUNT.username || form.get('password') !== ACCOUNT.password) {
      sendHtml(res, 200, signInPage(loginAction(issuerPath, uid), 'Invalid email or password.'));
      return;
    }
    // Sign-in and consent in one step: NeonPanel shows no consent screen to its own gateway.
    const grantId = await saveGrant(provider, interaction, ACCOUNT_ID);
    await provider.interactionFinished(req, res, { login: { accountId: ACCOUNT_ID }, consent: { grantId } });
  }

  return {
    handles: (method: string | undefined, local: string) => route(method, local) !== undefined,
    async handle(req: IncomingMessage, res: ServerResponse, local: string): Promise<void> {
      const matched = route(req.method, local);
      if (matched?.action === 'show') await show(req, res, matched.uid);
      if (matched?.action === 'login') await login(req, res, matched.uid);
    },
  };
}

/** Creates (or extends the session's existing) Grant with the requested and missing scopes. */
async function saveGrant(provider: Provider, interaction: Interaction, accountId: string): Promise<string> {
  const clientId = String(interaction.params.client_id);
  const existing = interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined;
  const grant = existing?.accountId === accountId ? existing : new provider.Grant({ accountId, clientId });
  const { details } = interaction.prompt;

  if (interaction.params.scope) grant.addOIDCScope(interaction.params.scope);
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope);
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(resource, scopes);
  }
  return grant.save();
}

function loginAction(issuerPath: string, uid: string): string {
  return `${issuerPath}/interaction/${uid}/login`;
}

/** Deliberately bare: no scripts, styles or external resources. */
function signInPage(action: string, error?: string): string {
  const alert = error ? `<p role="alert">${escapeHtml(error)}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in to NeonPanel</title></head>
<body>
<h1>Sign in to NeonPanel</h1>
${alert}
<form id="neonpanel-sign-in" method="post" action="${escapeHtml(action)}">
<label>Email <input type="email" name="username" autocomplete="username" required autofocus></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
</body>
</html>`;
}

class InteractionError extends Error {
  status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** oidc-provider's errors carry statusCode/error_description (e.g. SessionNotFound → 400). */
function sendInteractionError(res: ServerResponse, err: unknown): void {
  const e = err as { status?: number; statusCode?: number; error_description?: string; message?: string };
  const status = e.status ?? e.statusCode ?? 500;
  if (status >= 500) console.error('stand-in upstream interaction failed:', err);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendHtml(res, status, `<!doctype html><title>Sign-in error</title><p>${escapeHtml(e.error_description ?? e.message ?? 'error')}</p>`);
}
