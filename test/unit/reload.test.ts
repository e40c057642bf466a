import t from 'tap'
import { buildGateway } from '../../gateway/app.ts'
import { parseConfig } from '../../gateway/config/load.ts'
import { applyLiveConfig, changedKeys } from '../../gateway/config/reload.ts'

const env = { GATEWAY_SECRET: 'k'.repeat(32), UPSTREAM_CLIENT_SECRET: 'upstream-secret' }
const file = {
  publicUrl: 'https://oauth.example.com',
  mcpResource: 'https://mcp.example.com/mcp',
  upstream: { issuer: 'https://id.example.com', clientId: 'gateway' },
  allowedRedirectUris: ['https://chatgpt.com/connector/oauth/*'],
  scopes: { supported: ['openid'], default: ['openid'] },
}

t.test('changedKeys names nested settings, lists as one, and never values', async (t) => {
  t.same(changedKeys({ a: 1, b: { c: 2, d: [1, 2] } }, { a: 1, b: { c: 3, d: [1, 2, 3] }, e: 'secret-value' }), ['b.c', 'b.d', 'e'])
  t.same(changedKeys(parseConfig(file, env), parseConfig(file, env)), [], 'the same file changes nothing')
})

t.test('applyLiveConfig swaps the allowlist and reports the rest', async (t) => {
  const app = await buildGateway({ config: parseConfig(file, env) })
  t.teardown(() => app.close())
  const claude = 'https://claude.ai/api/mcp/auth_callback'
  const registerFor = (uri: string) => app.inject({ method: 'POST', url: '/register', payload: { redirect_uris: [uri], token_endpoint_auth_method: 'none' } })
  t.equal((await registerFor(claude)).statusCode, 400)

  const next = parseConfig({ ...file, allowedRedirectUris: [claude], lifetimes: { codeSeconds: 30 }, upstream: { ...file.upstream, timeoutMs: 3000 } }, env)
  t.same(applyLiveConfig(app.gateway, next).sort(), ['lifetimes.codeSeconds', 'upstream.timeoutMs'], 'keys that need a restart')
  t.equal((await registerFor(claude)).statusCode, 201, 'the new list applies to the next request')
  t.equal((await registerFor('https://chatgpt.com/connector/oauth/x')).statusCode, 400, 'the old list is gone')
  t.equal(app.gateway.config.lifetimes.codeSeconds, 60, 'restart-only keys keep their start-up value')
})

t.test('a reload keeps the redirect presets switched on at start-up', async (t) => {
  const withPresets = { ...file, redirectPresets: { claude: true, cursor: true } }
  const app = await buildGateway({ config: parseConfig(withPresets, env) })
  t.teardown(() => app.close())
  const registerFor = (uri: string) => app.inject({ method: 'POST', url: '/register', payload: { redirect_uris: [uri], token_endpoint_auth_method: 'none' } })
  const extra = 'https://client.example.com/callback'
  t.same(applyLiveConfig(app.gateway, parseConfig({ ...withPresets, allowedRedirectUris: [extra] }, env)), [])
  t.equal((await registerFor('https://claude.ai/api/mcp/auth_callback')).statusCode, 201, 'the claude preset still allows its URI')
  t.equal((await registerFor('cursor://anysphere.cursor-mcp/oauth/callback')).statusCode, 201, 'and cursor its own')
  t.equal((await registerFor(extra)).statusCode, 201, 'the new list applies')
  t.equal((await registerFor('https://chatgpt.com/connector/oauth/x')).statusCode, 400, 'the old list is gone')
})
