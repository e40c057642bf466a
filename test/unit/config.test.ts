import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfig, parseConfig } from '../../gateway/config.ts'

const env = { GATEWAY_SECRET: 'k'.repeat(32), UPSTREAM_CLIENT_SECRET: 'upstream-secret' }
const file = {
  publicUrl: 'https://oauth.example.com',
  mcpResource: 'https://mcp.example.com/mcp',
  upstream: { issuer: 'https://id.example.com', clientId: 'gateway' },
  allowedRedirectUris: ['https://chatgpt.com/connector/oauth/*'],
  scopes: { supported: ['openid', 'offline_access'], default: ['openid'] },
}

function fails(t: { throws: (fn: () => unknown, wanted: RegExp, message: string) => unknown }, input: unknown, environment: Record<string, string>, message: RegExp, name: string) {
  t.throws(() => parseConfig(input, environment), message, name)
}

t.test('a valid file gets its defaults and is frozen', async (t) => {
  const config = parseConfig(file, env)
  t.equal(config.port, 8080)
  t.equal(config.lifetimes.codeSeconds, 60)
  t.equal(config.upstream.tokenEndpointAuthMethod, 'auto')
  t.equal(config.upstream.clientSecret, 'upstream-secret')
  t.same(config.secrets, ['k'.repeat(32)])
  t.ok(Object.isFrozen(config) && Object.isFrozen(config.upstream) && Object.isFrozen(config.allowedRedirectUris))
})

t.test('the environment overrides the file', async (t) => {
  const config = parseConfig(file, {
    ...env,
    PORT: '9090',
    HOST: '127.0.0.1',
    GATEWAY_PUBLIC_URL: 'http://127.0.0.1:9090/',
    UPSTREAM_ISSUER: 'http://localhost:4000',
    UPSTREAM_CLIENT_ID: 'other',
    MCP_RESOURCE: 'http://127.0.0.1:7000/mcp',
    ALLOWED_REDIRECT_URIS: 'https://claude.ai/api/mcp/auth_callback, http://localhost/callback',
    GATEWAY_SECRET: `${'n'.repeat(32)},${'o'.repeat(32)}`,
  })
  t.equal(config.port, 9090)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.publicUrl, 'http://127.0.0.1:9090', 'trailing slash removed')
  t.equal(config.upstream.issuer, 'http://localhost:4000')
  t.equal(config.upstream.clientId, 'other')
  t.equal(config.mcpResource, 'http://127.0.0.1:7000/mcp')
  t.same(config.allowedRedirectUris, ['https://claude.ai/api/mcp/auth_callback', 'http://localhost/callback'])
  t.same(config.secrets, ['n'.repeat(32), 'o'.repeat(32)])
})

t.test('errors name the field and the reason', async (t) => {
  fails(t, { ...file, publicUrl: 'http://oauth.example.com' }, env, /publicUrl: must be https/, 'http off loopback')
  fails(t, { ...file, upstream: { ...file.upstream, issuer: 'not a url' } }, env, /upstream\.issuer: must be an absolute URL/, 'bad issuer')
  fails(t, { ...file, allowedRedirectUris: ['https://*.evil.com/x'] }, env, /allowedRedirectUris\.0: .*whole path segment/, 'host wildcard')
  fails(t, { ...file, allowedRedirectUris: [] }, env, /allowedRedirectUris: must allow at least one/, 'empty allowlist')
  fails(t, { ...file, scopes: { supported: ['openid'], default: ['email'] } }, env, /scopes\.default: every default scope/, 'default not supported')
  fails(t, { ...file, upstream: { ...file.upstream, clientSecret: 'leak' } }, env, /upstream: Unrecognized key.*clientSecret/, 'secret in the file')
  fails(t, { ...file, port: 'eighty' }, env, /port:/, 'port type')
  fails(t, file, { ...env, PORT: '70000' }, /port:/, 'port range from env')
  fails(t, file, { UPSTREAM_CLIENT_SECRET: 'x' }, /GATEWAY_SECRET: is required/, 'no secret')
  fails(t, file, { ...env, GATEWAY_SECRET: 'short' }, /at least 32 characters/, 'short secret')
  fails(t, file, { GATEWAY_SECRET: 'k'.repeat(32) }, /UPSTREAM_CLIENT_SECRET: is required/, 'no upstream secret')
  fails(t, ['a list'], env, /must hold a mapping/, 'not a mapping')
  t.throws(() => parseConfig({ ...file, publicUrl: 'ftp://x' }, env), ConfigError)
})

t.test('loadConfig reads GATEWAY_CONFIG and reports a broken file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'gateway-config-'))
  const good = join(dir, 'good.yaml')
  writeFileSync(good, `publicUrl: https://oauth.example.com\nmcpResource: https://mcp.example.com/mcp\nupstream: { issuer: https://id.example.com, clientId: g }\nallowedRedirectUris: [https://claude.ai/api/mcp/auth_callback]\nscopes: { supported: [openid], default: [openid] }\n`)
  t.equal(loadConfig({ ...env, GATEWAY_CONFIG: good }).publicUrl, 'https://oauth.example.com')
  const broken = join(dir, 'broken.yaml')
  writeFileSync(broken, 'publicUrl: [unclosed\n')
  t.throws(() => loadConfig({ ...env, GATEWAY_CONFIG: broken }), /not valid YAML/)
  t.throws(() => loadConfig({ ...env, GATEWAY_CONFIG: join(dir, 'missing.yaml') }), /cannot read the configuration file/)
  t.ok(loadConfig({ ...env }).allowedRedirectUris.length > 5, 'the shipped example file is valid')
})

t.test('limits and timeouts have defaults and are checked against each other', async (t) => {
  const config = parseConfig(file, env)
  t.equal(config.upstream.maxResponseBytes, 1024 * 1024, 'upstream answers are capped at 1 MiB')
  t.match(config.server, {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 72_000,
    connectionTimeoutMs: 60_000,
    maxParameters: 100,
    bodyLimits: { register: 16_384, token: 32_768, revoke: 32_768, authorize: 32_768 },
  })
  t.equal(parseConfig({ ...file, server: { bodyLimits: { token: 4096 } } }, env).server.bodyLimits.register, 16_384, 'one limit changed, the others keep their defaults')
  fails(t, { ...file, server: { headersTimeoutMs: 20_000, requestTimeoutMs: 10_000 } }, env, /server\.headersTimeoutMs: must not be longer than server\.requestTimeoutMs/, 'headers after the request')
  fails(t, { ...file, server: { connectionTimeoutMs: 5_000 } }, env, /server\.connectionTimeoutMs: must be longer than upstream\.timeoutMs/, 'idle timeout shorter than the upstream call')
  fails(t, { ...file, server: { maxParameters: 0 } }, env, /server\.maxParameters/, 'no parameters at all')
  fails(t, { ...file, upstream: { ...file.upstream, maxResponseBytes: 10 } }, env, /upstream\.maxResponseBytes/, 'a cap too small for any answer')
  const shipped = loadConfig({ ...env })
  t.same(shipped.server, config.server, 'the shipped file states the defaults')
  t.equal(shipped.upstream.maxResponseBytes, config.upstream.maxResponseBytes)
})
