import t from 'tap'
import { parseConfig } from '../../gateway/config/load.ts'
import { OAuthError } from '../../gateway/errors.ts'
import { acceptedResources, checkResource, upstreamResourceParameters } from '../../gateway/policy/resource.ts'
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

t.test('resource: the MCP server, with or without a trailing slash, or its origin root, canonicalised', async (t) => {
  const accepted = acceptedResources(config())
  t.equal(checkResource(accepted, undefined), undefined)
  t.equal(checkResource(accepted, 'https://mcp.example.com/mcp'), 'https://mcp.example.com/mcp', 'exactly')
  t.equal(checkResource(accepted, 'https://mcp.example.com/mcp/'), 'https://mcp.example.com/mcp', 'with a trailing slash (Claude)')
  t.equal(checkResource(accepted, 'https://MCP.example.com:443/mcp'), 'https://mcp.example.com/mcp', 'host case and default port as URL writes them')
  t.equal(checkResource(accepted, 'https://mcp.example.com/'), 'https://mcp.example.com/mcp', 'the origin root (ChatGPT)')
  t.equal(checkResource(accepted, 'https://mcp.example.com'), 'https://mcp.example.com/mcp', 'the bare origin')
  for (const foreign of ['https://mcp.example.com/other', 'https://evil.example.com/mcp', 'https://evil.example.com/', 'http://mcp.example.com/mcp', 'https://mcp.example.com/mcp?x=1', 'https://mcp.example.com/mcp#f', 'https://mcp.example.com/mcp/tools', 'not a url']) {
    const err = t.throws(() => checkResource(accepted, foreign), foreign) as OAuthError
    t.equal(err.error, 'invalid_target', foreign)
    t.equal(err.message, `resource: must name the protected MCP server: https://mcp.example.com/mcp, with or without a trailing slash, or its origin root https://mcp.example.com/ (RFC 8707 §2), not ${foreign}`, `${foreign}: the description names what is accepted`)
  }
})

t.test('resource: the origin root is switchable, and ambiguous between several resources', async (t) => {
  const strict = acceptedResources(config({}, { acceptOriginRootResource: false }))
  t.same(strict, { resources: ['https://mcp.example.com/mcp'], originRoot: false })
  t.equal(checkResource(strict, 'https://mcp.example.com/mcp/'), 'https://mcp.example.com/mcp', 'the trailing slash stays accepted')
  t.throws(() => checkResource(strict, 'https://mcp.example.com/'), { error: 'invalid_target', message: 'resource: must name the protected MCP server: https://mcp.example.com/mcp, with or without a trailing slash (RFC 8707 §2), not https://mcp.example.com/' })

  const several = { resources: ['https://mcp.example.com/mcp', 'https://mcp.example.com/admin/mcp'], originRoot: true }
  t.equal(checkResource(several, 'https://mcp.example.com/admin/mcp/'), 'https://mcp.example.com/admin/mcp', 'each by its own name')
  t.throws(() => checkResource(several, 'https://mcp.example.com/'), {
    error: 'invalid_target',
    message: 'resource: https://mcp.example.com/ is the origin root of several protected resources (https://mcp.example.com/mcp, https://mcp.example.com/admin/mcp), so it names none of them; send the resource itself (RFC 8707 §2)',
  })
  t.equal(checkResource({ resources: ['https://mcp.example.com/'], originRoot: false }, 'https://mcp.example.com'), 'https://mcp.example.com/', 'a resource that is its origin root')
})

t.test('what the upstream gets for resource, per mode', async (t) => {
  t.same(upstreamResourceParameters(config()), {}, 'drop, the default')
  t.same(upstreamResourceParameters(config({}, { resource: 'forward' })), { resource: 'https://mcp.example.com/mcp' })
  t.same(upstreamResourceParameters(config({}, { resource: { mode: 'map', value: 'https://api.example.com' } })), { resource: 'https://api.example.com' })
  t.same(upstreamResourceParameters(config({}, { resource: { mode: 'audience', value: 'neonpanel-api' } })), { audience: 'neonpanel-api' })
  t.same(upstreamResourceParameters(config({}, { resource: { mode: 'audience' } })), { audience: 'https://mcp.example.com/mcp' }, 'audience defaults to the MCP server')
})
