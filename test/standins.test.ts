// Proves the test stand-ins work on their own, before any gateway is involved:
// a real authorization code + PKCE flow against the stand-in upstream with
// openid-client, then the MCP stand-in with the official SDK client.
import t from 'tap';
import * as oidc from 'openid-client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CookieBrowser, signInAndFollow, signInFormAction } from './support/browser.ts';
import { startMcpServer } from './support/mcp-server.ts';
import { freePort } from './support/ports.ts';
import { startUpstream } from './support/upstream.ts';
import type { StandInUpstream } from './support/upstream.ts';

const SUB = 'np-user-1001';
const RESOURCE_METADATA_URL = 'http://127.0.0.1:9/.well-known/oauth-protected-resource/mcp';

async function callbackUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}/callback`;
}

function discover(upstream: StandInUpstream, algorithm: 'oidc' | 'oauth2' = 'oidc'): Promise<oidc.Configuration> {
  // openid-client defaults to client_secret_post; the stand-in's default is client_secret_basic.
  return oidc.discovery(new URL(upstream.issuer), upstream.clientId, upstream.clientSecret, oidc.ClientSecretBasic(), {
    algorithm,
    execute: [oidc.allowInsecureRequests],
  });
}

/** Starts an authorization code + PKCE request and drives the browser to the callback. */
async function authorize(
  config: oidc.Configuration,
  callback: string,
  account: { username: string; password: string },
  extra: Record<string, string> = {},
) {
  const codeVerifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const authorizationUrl = oidc.buildAuthorizationUrl(config, {
    redirect_uri: callback,
    scope: 'openid email offline_access',
    code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    state,
    ...extra,
  });
  const result = await signInAndFollow(new CookieBrowser(), authorizationUrl.href, account, (url) =>
    url.href.startsWith(callback),
  );
  return { ...result, codeVerifier, state };
}

t.test('code + PKCE flow, refresh, and MCP calls with the resulting token', async (t) => {
  const callback = await callbackUrl();
  const upstream = await startUpstream({ redirectUris: [callback] });
  t.teardown(() => upstream.close());
  const config = await discover(upstream);

  const { redirect, codeVerifier, state } = await authorize(config, callback, upstream.account);
  if (!redirect) throw new Error('sign-in did not reach the callback');
  const tokens = await oidc.authorizationCodeGrant(config, redirect, { pkceCodeVerifier: codeVerifier, expectedState: state });
  t.ok(tokens.access_token, 'access token issued');
  t.ok(tokens.refresh_token, 'refresh token issued');
  t.equal(tokens.claims()?.sub, SUB, 'id_token names the test account');
  t.equal(tokens.expires_in, 3600, 'default access token lifetime');

  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token ?? '');
  t.ok(refreshed.access_token, 'refresh yields a new access token');
  t.ok(refreshed.refresh_token, 'refresh yields a refresh token');
  t.not(refreshed.refresh_token, tokens.refresh_token, 'refresh token was rotated');

  const introspectionEndpoint = config.serverMetadata().introspection_endpoint;
  if (!introspectionEndpoint) throw new Error('discovery has no introspection_endpoint');
  const mcp = await startMcpServer({
    upstream: { introspectionEndpoint, ...upstream.introspection },
    resourceMetadataUrl: RESOURCE_METADATA_URL,
  });
  t.teardown(() => mcp.close());

  t.test('MCP tools answer with a valid bearer token', async (t) => {
    const client = new Client({ name: 'standins-test', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(mcp.url), {
      requestInit: { headers: { Authorization: `Bearer ${refreshed.access_token}` } },
    });
    await client.connect(transport);
    t.teardown(() => client.close());

    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    t.same(whoami.content, [{ type: 'text', text: `signed in as ${SUB}` }]);
    const echo = await client.callTool({ name: 'echo', arguments: { text: 'hello' } });
    t.same(echo.content, [{ type: 'text', text: 'hello' }]);
  });

  t.test('MCP requests without a usable token get 401 with resource_metadata', async (t) => {
    const initialize = JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    });
    const post = (authorization?: string) =>
      fetch(mcp.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(authorization ? { authorization } : {}),
        },
        body: initialize,
      });

    const missing = await post();
    t.equal(missing.status, 401);
    t.equal(missing.headers.get('www-authenticate'), `Bearer resource_metadata="${RESOURCE_METADATA_URL}"`);
    t.match(await missing.json(), { error: String });

    const bogus = await post('Bearer not-a-real-token');
    t.equal(bogus.status, 401);
    t.match(bogus.headers.get('www-authenticate'), /^Bearer error="invalid_token", .*resource_metadata="[^"]+"$/);

    const refreshAsBearer = await post(`Bearer ${refreshed.refresh_token}`);
    t.equal(refreshAsBearer.status, 401, 'a refresh token is not an access token');

    const elsewhere = await fetch(new URL('/other', mcp.url));
    t.equal(elsewhere.status, 404);
  });
});

t.test('a wrong password re-renders the sign-in form', async (t) => {
  const callback = await callbackUrl();
  const upstream = await startUpstream({ redirectUris: [callback] });
  t.teardown(() => upstream.close());

  const result = await authorize(await discover(upstream), callback, { ...upstream.account, password: 'wrong' });
  t.equal(result.redirect, undefined, 'no redirect to the client');
  t.equal(result.response?.status, 200);
  t.match(result.body, /Invalid email or password/);
  t.ok(signInFormAction(result.body ?? ''), 'the form is shown again');
});

t.test('an unknown resource indicator is answered with invalid_target', async (t) => {
  const callback = await callbackUrl();
  const upstream = await startUpstream({ redirectUris: [callback] });
  t.teardown(() => upstream.close());

  const { redirect } = await authorize(await discover(upstream), callback, upstream.account, {
    resource: 'http://127.0.0.1:9/mcp',
  });
  t.equal(redirect?.searchParams.get('error'), 'invalid_target');
});

t.test('the registered token endpoint auth method is enforced', async (t) => {
  // oidc-provider itself accepts basic and post interchangeably; the stand-in does not.
  for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
    const upstream = await startUpstream({ redirectUris: [await callbackUrl()], tokenAuthMethod: method });
    t.teardown(() => upstream.close());
    const tokenRequest = (via: typeof method) => {
      const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'unknown' });
      const headers: Record<string, string> = {};
      if (via === 'client_secret_post') {
        body.set('client_id', upstream.clientId);
        body.set('client_secret', upstream.clientSecret);
      } else {
        headers.authorization = `Basic ${btoa(`${upstream.clientId}:${upstream.clientSecret}`)}`;
      }
      return fetch(`${upstream.issuer}/token`, { method: 'POST', headers, body });
    };
    const other = method === 'client_secret_basic' ? 'client_secret_post' : 'client_secret_basic';
    t.match(await (await tokenRequest(method)).json(), { error: 'invalid_grant' }, `${method} authenticates`);
    const refused = await tokenRequest(other);
    t.equal(refused.status, 401, `${other} is refused when ${method} is registered`);
    t.match(await refused.json(), { error: 'invalid_client' });
  }
});

t.test('an issuer with a path discovers and signs in', async (t) => {
  const callback = await callbackUrl();
  const upstream = await startUpstream({ redirectUris: [callback], issuerPath: '/oauth' });
  t.teardown(() => upstream.close());
  t.match(upstream.issuer, /^http:\/\/127\.0\.0\.1:\d+\/oauth$/);

  const origin = new URL(upstream.issuer).origin;
  for (const url of [`${origin}/.well-known/oauth-authorization-server/oauth`, `${upstream.issuer}/.well-known/openid-configuration`]) {
    const response = await fetch(url);
    t.equal(response.status, 200, url);
    t.match(await response.json(), { issuer: upstream.issuer, token_endpoint: `${upstream.issuer}/token` }, url);
  }

  // openid-client's 'oauth2' algorithm uses the RFC 8414 path, 'oidc' the OIDC one.
  const viaRfc8414 = await discover(upstream, 'oauth2');
  const viaOidc = await discover(upstream, 'oidc');
  t.equal(viaRfc8414.serverMetadata().issuer, upstream.issuer);
  t.equal(viaOidc.serverMetadata().issuer, upstream.issuer);

  const { redirect, codeVerifier, state } = await authorize(viaOidc, callback, upstream.account);
  if (!redirect) throw new Error('sign-in did not reach the callback');
  const tokens = await oidc.authorizationCodeGrant(viaOidc, redirect, { pkceCodeVerifier: codeVerifier, expectedState: state });
  t.ok(tokens.access_token, 'mounted provider issues tokens');
});
