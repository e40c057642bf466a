import t from 'tap'
import { parseConfig } from '../../gateway/config/load.ts'
import { OAuthError } from '../../gateway/errors.ts'
import { checkResource, upstreamResourceParameters } from '../../gateway/policy/resource.ts'
import { grantedClientScope, resolveClientScope, upstreamScope } from '../../gateway/policy/scopes.ts'

const env = { GATEWAY_SECRET: 'k'.repeat(32), UPSTREAM_CLIENT_SECRET: 'upstream-secret' }
function config(overrides: Record<string, unknown> = {}, upstream: Record<string, unknown> = {}) {
  return parseConfig(
    {
      publicUrl: 'https://oauth.example.com',
      mcpResource: 'https://mcp.example.com/mcp',
      upstream: { issuer: 'https://id.example.com', clientId: 'gateway', ...upstream },
      redirectPresets: { chatgpt: true },
      scopes: { supported: ['openid', 'mcp', 'offline_access'], default: ['openid', 'mcp'] },
      ...overrides,
    },
    env,
  )
}

t.test('the client scope: empty means the defaults, unknown scopes are named', async (t) => {
  const { scopes } = config()
  t.equal(resolveClientScope(scopes, undefined), 'openid mcp')
  t.equal(resolveClientScope(scopes, ''), 'openid mcp')
  t.equal(resolveClientScope(scopes, '  '), 'openid mcp', 'only spaces')
  t.equal(resolveClientScope(scopes, 'mcp mcp openid'), 'mcp openid', 'repeats dropped')
  t.throws(() => resolveClientScope(scopes, 'openid admin root'), { error: 'invalid_scope', message: /^scope: admin root are not supported \(supported: openid mcp offline_access\)$/ })
})

t.test('the upstream scope: renamed, dropped, offline_access added for refresh tokens', async (t) => {
  const { scopes } = config({ scopes: { supported: ['openid', 'mcp', 'email'], default: ['mcp'], upstream: { mcp: 'neonpanel.api neonpanel.read', email: '' }, addOfflineAccess: true } })
  t.equal(upstreamScope(scopes, 'openid mcp email', { refreshTokens: true }), 'openid neonpanel.api neonpanel.read offline_access')
  t.equal(upstreamScope(scopes, 'openid mcp', { refreshTokens: false }), 'openid neonpanel.api neonpanel.read', 'no offline_access without the refresh_token grant')
  t.equal(upstreamScope(config().scopes, 'openid mcp', { refreshTokens: true }), 'openid mcp', 'nothing configured: unchanged')
})

t.test('the granted scope in the client\'s names', async (t) => {
  const { scopes } = config({ scopes: { supported: ['openid', 'mcp', 'email'], default: ['mcp'], upstream: { mcp: 'neonpanel.api' }, addOfflineAccess: true } })
  t.equal(grantedClientScope(scopes, 'openid mcp', 'openid neonpanel.api offline_access'), 'openid mcp')
  t.equal(grantedClientScope(scopes, 'openid mcp', 'openid offline_access'), 'openid', 'a scope whose upstream scope was not granted is not claimed')
  t.equal(grantedClientScope(scopes, 'openid mcp', undefined), undefined, 'no scope in the answer: none claimed')
  t.equal(grantedClientScope(config().scopes, 'openid', 'openid profile'), 'openid profile', 'nothing configured: the upstream\'s answer as it is')
})

t.test('resource: only the MCP server, with or without a trailing slash', async (t) => {
  const c = config()
  t.equal(checkResource(c, undefined), undefined)
  t.equal(checkResource(c, 'https://mcp.example.com/mcp/'), 'https://mcp.example.com/mcp')
  const err = t.throws(() => checkResource(c, 'https://mcp.example.com/other')) as OAuthError
  t.match(err, { error: 'invalid_target', message: /^resource: must name the protected MCP server https:\/\/mcp\.example\.com\/mcp \(RFC 8707 §2\), not https:\/\/mcp\.example\.com\/other$/ })
})

t.test('what the upstream gets for resource, per mode', async (t) => {
  t.same(upstreamResourceParameters(config()), {}, 'drop, the default')
  t.same(upstreamResourceParameters(config({}, { resource: 'forward' })), { resource: 'https://mcp.example.com/mcp' })
  t.same(upstreamResourceParameters(config({}, { resource: { mode: 'map', value: 'https://api.example.com' } })), { resource: 'https://api.example.com' })
  t.same(upstreamResourceParameters(config({}, { resource: { mode: 'audience', value: 'neonpanel-api' } })), { audience: 'neonpanel-api' })
  t.same(upstreamResourceParameters(config({}, { resource: { mode: 'audience' } })), { audience: 'https://mcp.example.com/mcp' }, 'audience defaults to the MCP server')
})
