/** Configuration of registration passthrough and front mode. */
import t from 'tap'
import { parseConfig } from '../../gateway/config/load.ts'

const env = { GATEWAY_SECRET: 'k'.repeat(32), UPSTREAM_CLIENT_SECRET: 'upstream-secret' }
const file = {
  publicUrl: 'https://mcp.example.com',
  mcpResource: 'https://mcp.example.com/mcp',
  upstream: { issuer: 'https://id.example.com', clientId: 'gateway' },
  allowedRedirectUris: ['https://chatgpt.com/connector/oauth/*'],
  scopes: { supported: ['openid'], default: ['openid'] },
}

t.test('both modes are off by default', async (t) => {
  const config = parseConfig(file, env)
  t.equal(config.registration.mode, 'local')
  t.equal(config.front.enabled, false)
  t.equal(config.upstream.registrationToken, undefined)
})

t.test('registration passthrough', async (t) => {
  const config = parseConfig({ ...file, registration: { mode: 'upstream' } }, { ...env, UPSTREAM_REGISTRATION_TOKEN: 'iat' })
  t.equal(config.registration.mode, 'upstream')
  t.equal(config.upstream.registrationToken, 'iat', 'the initial access token comes from the environment only')
  t.throws(() => parseConfig({ ...file, registration: { mode: 'proxy' } }, env), /registration\.mode:/)
  t.throws(() => parseConfig({ ...file, upstream: { ...file.upstream, registrationToken: 'leak' } }, env), /Unrecognized key/, 'never in the file')
  const explicit = parseConfig({ ...file, upstream: { ...file.upstream, endpoints: { authorization_endpoint: 'https://id.example.com/a', token_endpoint: 'https://id.example.com/t', registration_endpoint: 'https://id.example.com/r' } } }, env)
  t.equal(explicit.upstream.endpoints?.registration_endpoint, 'https://id.example.com/r', 'an explicit registration endpoint for an upstream without discovery')
})

t.test('front mode', async (t) => {
  const config = parseConfig({ ...file, front: { enabled: true, mcpUpstream: 'http://mcp-server.internal:3000/mcp' } }, env)
  t.same(config.front, { enabled: true, mcpUpstream: 'http://mcp-server.internal:3000/mcp', connectTimeoutMs: 5000, headersTimeoutMs: 300000, idleTimeoutMs: 0 }, 'plain http inside the cluster; no idle limit for event streams')
  t.throws(() => parseConfig({ ...file, front: { enabled: true } }, env), /front\.mcpUpstream: is required when front\.enabled/)
  t.throws(() => parseConfig({ ...file, front: { enabled: true, mcpUpstream: 'ftp://x/mcp' } }, env), /front\.mcpUpstream: must be http or https/)
  t.throws(() => parseConfig({ ...file, front: { enabled: true, mcpUpstream: 'http://u:p@x/mcp' } }, env), /front\.mcpUpstream: must not contain userinfo/)
  for (const resource of ['https://mcp.example.com/token', 'https://mcp.example.com/', 'https://mcp.example.com/.well-known/x']) {
    t.throws(() => parseConfig({ ...file, mcpResource: resource, front: { enabled: true, mcpUpstream: 'http://x/mcp' } }, env), /mcpResource: in front mode the MCP endpoint must have its own path/, resource)
  }
  t.ok(parseConfig({ ...file, mcpResource: 'https://mcp.example.com/token' }, env), 'any path without front mode: the gateway serves no MCP endpoint then')
})
