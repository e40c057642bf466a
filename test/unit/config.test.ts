import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfig, parseConfig, redisConnection } from '../../gateway/config/load.ts'

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
    TRUST_PROXY: '1',
  })
  t.equal(config.port, 9090)
  t.equal(config.host, '127.0.0.1')
  t.equal(config.publicUrl, 'http://127.0.0.1:9090', 'trailing slash removed')
  t.equal(config.upstream.issuer, 'http://localhost:4000')
  t.equal(config.upstream.clientId, 'other')
  t.equal(config.mcpResource, 'http://127.0.0.1:7000/mcp')
  t.same(config.allowedRedirectUris, ['https://claude.ai/api/mcp/auth_callback', 'http://localhost/callback'])
  t.same(config.secrets, ['n'.repeat(32), 'o'.repeat(32)])
  t.equal(config.server.trustProxy, 1, 'TRUST_PROXY as a number of hops')
  t.same(parseConfig(file, { ...env, TRUST_PROXY: '10.0.0.0/8, 192.168.1.7' }).server.trustProxy, ['10.0.0.0/8', '192.168.1.7'], 'or as addresses and ranges')
  fails(t, file, { ...env, TRUST_PROXY: '11' }, /server\.trustProxy: /, 'TRUST_PROXY is checked as the file is')
})

t.test('ADMIN_TOKEN switches the Admin API on, and must be long and sendable', async (t) => {
  t.equal(parseConfig(file, env).admin.token, undefined, 'off without it')
  t.equal(parseConfig(file, { ...env, ADMIN_TOKEN: '' }).admin.token, undefined, 'off when empty')
  const token = 'Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8='
  t.equal(parseConfig(file, { ...env, ADMIN_TOKEN: token }).admin.token, token, 'on with a long token')
  const short = 'a'.repeat(31)
  fails(t, file, { ...env, ADMIN_TOKEN: short }, /ADMIN_TOKEN: must be at least 32 characters/, 'too short')
  const message = (() => {
    try {
      parseConfig(file, { ...env, ADMIN_TOKEN: short })
      return ''
    } catch (err) {
      return (err as Error).message
    }
  })()
  t.ok(message && !message.includes(short), 'the message never quotes the token')
  fails(t, file, { ...env, ADMIN_TOKEN: `${'a'.repeat(32)} b` }, /ADMIN_TOKEN: must be a bearer token/, 'a space cannot be sent as a bearer token')
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
  const shipped = loadConfig({ ...env })
  t.same(shipped.redirectPresets, { chatgpt: true, claude: true, loopback: true, vscodeWeb: true, cursor: true, inspector: true }, 'the shipped file switches every preset on')
  t.same(shipped.upstream.resource, { mode: 'drop' }, 'and drops resource upstream')
})

t.test('redirect presets and extra entries', async (t) => {
  const config = parseConfig(file, env)
  t.same(config.redirectPresets, { chatgpt: false, claude: false, loopback: false, vscodeWeb: false, cursor: false, inspector: false }, 'presets are off unless switched on')
  const presetsOnly = parseConfig({ ...file, allowedRedirectUris: undefined, redirectPresets: { claude: true } }, env)
  t.same(presetsOnly.allowedRedirectUris, [], 'extra entries default to none')
  t.equal(presetsOnly.redirectPresets.claude, true)
  const fromEnv = parseConfig({ ...file, redirectPresets: { chatgpt: true } }, { ...env, ALLOWED_REDIRECT_URIS: 'https://app.example.com/cb' })
  t.same(fromEnv.allowedRedirectUris, ['https://app.example.com/cb'], 'ALLOWED_REDIRECT_URIS replaces the extra entries')
  t.equal(fromEnv.redirectPresets.chatgpt, true, 'and leaves the presets alone')
  fails(t, { ...file, allowedRedirectUris: [], redirectPresets: { chatgpt: false } }, env, /allowedRedirectUris: must allow at least one redirect URI: switch on a preset/, 'nothing allowed')
  fails(t, { ...file, redirectPresets: { chatgtp: true } }, env, /redirectPresets: Unrecognized key.*chatgtp/, 'a misspelt preset')
  fails(t, { ...file, redirectPresets: { claude: 'yes' } }, env, /redirectPresets\.claude:/, 'a preset switch that is not a boolean')
})

t.test('upstream.resource', async (t) => {
  const upstream = (resource: unknown) => ({ ...file, upstream: { ...file.upstream, resource } })
  t.same(parseConfig(upstream('forward'), env).upstream.resource, { mode: 'forward' }, 'a bare mode')
  t.same(parseConfig(upstream({ mode: 'map', value: 'https://api.example.com' }), env).upstream.resource, { mode: 'map', value: 'https://api.example.com' })
  t.same(parseConfig(upstream({ mode: 'audience' }), env).upstream.resource, { mode: 'audience' }, 'audience defaults its value later')
  fails(t, upstream({ mode: 'map' }), env, /upstream\.resource\.value:/, 'map needs a value')
  fails(t, upstream({ mode: 'map', value: 'https://api.example.com/#x' }), env, /upstream\.resource\.value: must not have a fragment/, 'a fragment')
  fails(t, upstream('send'), env, /upstream\.resource/, 'an unknown mode')
})

t.test('scopes.upstream and lifetimes', async (t) => {
  const config = parseConfig({ ...file, scopes: { ...file.scopes, upstream: { openid: 'openid neonpanel.api', offline_access: '' }, addOfflineAccess: true } }, env)
  t.same(config.scopes.upstream, { openid: 'openid neonpanel.api', offline_access: '' })
  t.equal(config.scopes.addOfflineAccess, true)
  t.equal(config.lifetimes.codeRetrySeconds, 10)
  t.equal(config.lifetimes.refreshRetrySeconds, 10)
  fails(t, { ...file, scopes: { ...file.scopes, upstream: { mcp: 'neonpanel.api' } } }, env, /scopes\.upstream: every scope renamed here must be in scopes\.supported/, 'an unsupported client scope')
  fails(t, { ...file, scopes: { ...file.scopes, upstream: { openid: 'a  b' } } }, env, /scopes\.upstream\.openid: must be space-separated scope tokens/, 'a bad upstream scope list')
  fails(t, { ...file, lifetimes: { codeRetrySeconds: 0 } }, env, /lifetimes\.codeRetrySeconds:/, 'a zero retry window')
})

t.test('the upstream issuer keeps its trailing slash; the public URL loses it', async (t) => {
  const config = parseConfig({ ...file, publicUrl: 'https://oauth.example.com/', upstream: { ...file.upstream, issuer: 'https://id.example.com/oauth/' } }, env)
  t.equal(config.publicUrl, 'https://oauth.example.com')
  t.equal(config.upstream.issuer, 'https://id.example.com/oauth/', 'compared with the upstream iss exactly when there is no discovery')
})

t.test('Redis: REDIS_URL from the environment only, redis.* from the file', async (t) => {
  const memory = parseConfig(file, env)
  t.same(memory.redis, { keyPrefix: 'oauth-gateway:', commandTimeoutMs: 1000, waitReplicas: 0, waitTimeoutMs: 500, connection: undefined }, 'defaults, and no Redis without REDIS_URL')
  const shared = parseConfig({ ...file, redis: { keyPrefix: 'np:', commandTimeoutMs: 250, waitTimeoutMs: 100 } }, { ...env, REDIS_URL: 'rediss://:p4ss@redis.internal:6380/2' })
  t.same(shared.redis, { keyPrefix: 'np:', commandTimeoutMs: 250, waitReplicas: 0, waitTimeoutMs: 100, connection: { mode: 'single', url: 'rediss://:p4ss@redis.internal:6380/2', tls: true } })
  t.throws(() => parseConfig(file, { ...env, REDIS_URL: 'http://:p4ss@redis.internal' }), /REDIS_URL: must be a redis:\/\/ or rediss:\/\/ URL/)
  let message = ''
  try {
    parseConfig(file, { ...env, REDIS_URL: 'memcached://:p4ss@x' })
  } catch (err) {
    message = (err as Error).message
  }
  t.match(message, /REDIS_URL/)
  t.notMatch(message, /p4ss/, 'the message never repeats the URL, which can carry a password')
  fails(t, { ...file, redis: { url: 'redis://x' } }, env, /redis: Unrecognized key.*url/, 'the URL is not a file key')
  fails(t, { ...file, redis: { keyPrefix: 'has space' } }, env, /redis\.keyPrefix: must be printable ASCII/, 'prefix')
  fails(t, { ...file, redis: { commandTimeoutMs: 10 } }, env, /redis\.commandTimeoutMs:/, 'timeout range')
})

t.test('memoryStore.maxEntries: 100,000 by default, within bounds', async (t) => {
  t.equal(parseConfig(file, env).memoryStore.maxEntries, 100_000)
  t.equal(parseConfig({ ...file, memoryStore: { maxEntries: 1_000_000 } }, env).memoryStore.maxEntries, 1_000_000)
  fails(t, { ...file, memoryStore: { maxEntries: 5 } }, env, /memoryStore\.maxEntries:/, 'too small')
  fails(t, { ...file, memoryStore: { maxEntries: 1.5 } }, env, /memoryStore\.maxEntries:/, 'not an integer')
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
    bodyLimits: { register: 16_384, token: 32_768, revoke: 32_768, authorize: 32_768, admin: 16_384 },
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

t.test('rate limits, trusted proxies, shutdown and metrics', async (t) => {
  const config = parseConfig(file, env)
  t.same(config.limits.register.perIp, { max: 60, windowSeconds: 60 }, 'on by default')
  t.same(config.limits.token, {
    perIp: { max: 1200, windowSeconds: 60 },
    perTrustedIp: { max: 6000, windowSeconds: 60 },
    perClient: { max: 120, windowSeconds: 60 },
    perFamily: { max: 12_000, windowSeconds: 60 },
    global: { max: 60_000, windowSeconds: 60 },
  })
  t.same(config.limits.register, { perIp: { max: 60, windowSeconds: 60 }, perTrustedIp: { max: 600, windowSeconds: 60 }, perFamily: { max: 1200, windowSeconds: 60 }, global: { max: 6000, windowSeconds: 60 } })
  t.same(config.limits.trustedRanges, [], 'no trusted range unless named')
  t.same(parseConfig({ ...file, limits: { trustedRanges: ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7'] } }, env).limits.trustedRanges, ['203.0.113.0/24', '2001:db8::/32', '198.51.100.7'])
  for (const bad of ['203.0.113.0/33', '2001:db8::/129', 'example.com', '10.0.0.0/8/1', '1.2.3/24', ''])
    fails(t, { ...file, limits: { trustedRanges: [bad] } }, env, /limits\.trustedRanges\.0: must be an IPv4 or IPv6 address or CIDR range/, `trusted range ${bad || '(empty)'}`)
  t.equal(config.server.trustProxy, 0, 'no proxy is trusted unless configured')
  t.equal(config.server.shutdownTimeoutMs, 10_000)
  t.same(config.metrics, { enabled: true, token: undefined })
  t.equal(parseConfig(file, { ...env, METRICS_TOKEN: 'scrape' }).metrics.token, 'scrape', 'the metrics token comes from the environment')
  t.same(parseConfig({ ...file, server: { trustProxy: ['10.0.0.0/8'] } }, env).server.trustProxy, ['10.0.0.0/8'])
  t.equal(parseConfig({ ...file, limits: { token: { perClient: { max: 5 } } } }, env).limits.token.perClient.windowSeconds, 60, 'a window defaults to a minute')
  fails(t, { ...file, limits: { token: { perClient: { max: -1 } } } }, env, /limits\.token\.perClient\.max: /, 'a negative limit')
  fails(t, { ...file, limits: { token: { perUser: { max: 1 } } } }, env, /limits\.token: .*perUser/, 'an unknown rule')
  fails(t, { ...file, server: { trustProxy: true } }, env, /server\.trustProxy: /, 'trusting every proxy is refused: any client could pick its address')
})

// How the gateway reaches Redis, from the environment: one node, Sentinel or Cluster, exactly one of them, with passwords
// and TLS; a conflict or a bad host:port stops start-up naming the variable, never a password.

function refusal(environment: Record<string, string>, input: unknown = file): string {
  try {
    parseConfig(input, { ...env, ...environment })
  } catch (err) {
    return (err as Error).message
  }
  throw new Error('the configuration was accepted')
}

const directory = mkdtempSync(join(tmpdir(), 'redis-config-'))
const caFile = join(directory, 'ca.pem')
writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
const notPem = join(directory, 'not.pem')
writeFileSync(notPem, 'hello')

t.test('no Redis variable: no connection, nothing to wait for', async (t) => {
  t.same(redisConnection({}), { problems: [] })
  t.equal(parseConfig(file, env).redis.waitReplicas, 0)
})

t.test('REDIS_URL: one node; TLS from rediss:// or REDIS_TLS; the password from the URL or REDIS_PASSWORD', async (t) => {
  t.same(parseConfig(file, { ...env, REDIS_URL: 'redis://redis:6379' }).redis.connection, { mode: 'single', url: 'redis://redis:6379', tls: false })
  t.equal(parseConfig(file, { ...env, REDIS_URL: 'redis://redis:6379' }).redis.waitReplicas, 0, 'one node has no replica to wait for')
  t.equal(parseConfig(file, { ...env, REDIS_URL: 'rediss://redis:6380' }).redis.connection?.tls, true)
  const tls = parseConfig(file, { ...env, REDIS_URL: 'redis://redis:6380', REDIS_TLS: '1', REDIS_CA_FILE: caFile, REDIS_USERNAME: 'gw', REDIS_PASSWORD: 'pw' }).redis.connection
  t.match(tls, { mode: 'single', tls: true, username: 'gw', password: 'pw' })
  t.match(tls?.ca, /BEGIN CERTIFICATE/, 'the CA file is read once, at start-up')
  const both = refusal({ REDIS_URL: 'redis://:s3cret@redis:6379', REDIS_PASSWORD: 'other' })
  t.match(both, /REDIS_URL, REDIS_PASSWORD: the URL carries a password already/)
  t.notMatch(both, /s3cret|other/, 'no password in the message')
})

t.test('REDIS_SENTINELS: sentinels, the master name and both passwords; waits for one replica by default', async (t) => {
  const config = parseConfig(file, {
    ...env,
    REDIS_SENTINELS: 'sentinel-0:26379, sentinel-1:26379,[::1]:26380',
    REDIS_SENTINEL_MASTER: 'gateway',
    REDIS_PASSWORD: 'data',
    REDIS_SENTINEL_PASSWORD: 'sentinel',
  })
  t.same(config.redis.connection, {
    mode: 'sentinel',
    sentinels: [{ host: 'sentinel-0', port: 26379 }, { host: 'sentinel-1', port: 26379 }, { host: '::1', port: 26380 }],
    masterName: 'gateway',
    sentinelPassword: 'sentinel',
    password: 'data',
    tls: false,
  })
  t.equal(config.redis.waitReplicas, 1)
  t.equal(parseConfig({ ...file, redis: { waitReplicas: 0 } }, { ...env, REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_MASTER: 'm' }).redis.waitReplicas, 0, 'the file may turn the wait off')
  t.match(refusal({ REDIS_SENTINELS: 's:26379' }), /REDIS_SENTINEL_MASTER: is required with REDIS_SENTINELS/)
  t.match(refusal({ REDIS_URL: 'redis://r:6379', REDIS_SENTINEL_MASTER: 'm' }), /REDIS_SENTINEL_MASTER: is only read with REDIS_SENTINELS/)
  t.match(refusal({ REDIS_URL: 'redis://r:6379', REDIS_SENTINEL_PASSWORD: 'x' }), /REDIS_SENTINEL_PASSWORD: is only read with REDIS_SENTINELS/)
})

t.test('REDIS_CLUSTER_NODES: the seed nodes, the same passwords and TLS', async (t) => {
  const config = parseConfig(file, { ...env, REDIS_CLUSTER_NODES: 'node-0:6379,node-1:6379', REDIS_TLS: 'true', REDIS_CA_FILE: caFile, REDIS_PASSWORD: 'pw' })
  t.match(config.redis.connection, { mode: 'cluster', nodes: [{ host: 'node-0', port: 6379 }, { host: 'node-1', port: 6379 }], tls: true, password: 'pw' })
  t.equal(config.redis.waitReplicas, 1)
})

t.test('exactly one way: the conflict is named', async (t) => {
  t.match(refusal({ REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'n:6379' }), /REDIS_URL, REDIS_CLUSTER_NODES: set only one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES/)
  t.match(refusal({ REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_MASTER: 'm', REDIS_CLUSTER_NODES: 'n:6379' }), /REDIS_SENTINELS, REDIS_CLUSTER_NODES: set only one/)
})

t.test('a bad host:port names the variable and the entry', async (t) => {
  t.match(refusal({ REDIS_CLUSTER_NODES: 'node-0:6379,node-1' }), /REDIS_CLUSTER_NODES: "node-1" is not host:port/)
  t.match(refusal({ REDIS_CLUSTER_NODES: 'node-0:70000' }), /REDIS_CLUSTER_NODES: "node-0:70000" is not host:port/, 'port out of range')
  t.match(refusal({ REDIS_SENTINELS: 'a:1,b:x,c', REDIS_SENTINEL_MASTER: 'm' }), /REDIS_SENTINELS: "b:x", "c" are not host:port/)
  t.match(refusal({ REDIS_CLUSTER_NODES: ' , ' }), /REDIS_CLUSTER_NODES: must list at least one host:port/)
  t.match(refusal({ REDIS_CLUSTER_NODES: 'redis://node:6379' }), /is not host:port/, 'a URL is not a seed')
})

t.test('TLS settings: REDIS_TLS values, a CA file that cannot be used', async (t) => {
  t.match(refusal({ REDIS_URL: 'redis://r:6379', REDIS_TLS: 'yes please' }), /REDIS_TLS: must be 1 \(TLS on\) or 0 \(off\)/)
  t.match(refusal({ REDIS_URL: 'redis://r:6379', REDIS_CA_FILE: caFile }), /REDIS_CA_FILE: TLS is off; set REDIS_TLS=1/)
  t.match(refusal({ REDIS_URL: 'rediss://r:6379', REDIS_CA_FILE: join(directory, 'missing.pem') }), /REDIS_CA_FILE: cannot read .*missing\.pem: ENOENT/)
  t.match(refusal({ REDIS_URL: 'rediss://r:6379', REDIS_CA_FILE: notPem }), /REDIS_CA_FILE: .*not\.pem holds no PEM certificate/)
  t.equal(parseConfig(file, { ...env, REDIS_URL: 'rediss://r:6379', REDIS_TLS: '0' }).redis.connection?.tls, true, 'rediss:// is TLS whatever REDIS_TLS says')
})

t.test('redis.waitTimeoutMs must leave the WAIT time to answer within the command timeout', async (t) => {
  t.match(refusal({}, { ...file, redis: { commandTimeoutMs: 500, waitTimeoutMs: 500 } }), /redis\.waitTimeoutMs: must be shorter than redis\.commandTimeoutMs/)
  t.match(refusal({}, { ...file, redis: { waitReplicas: -1 } }), /redis\.waitReplicas:/)
})
