import t from 'tap'
import { RedirectAllowlist, normaliseRedirectUri, parsePattern, sameRedirectUri } from '../../gateway/policy/redirect-uri.ts'
import { allowlistSources } from '../../gateway/policy/presets.ts'
import { parse } from 'yaml'
import { readFileSync } from 'node:fs'

const file = parse(readFileSync(new URL('../../config/gateway.yaml', import.meta.url), 'utf8'))
const shipped = new RedirectAllowlist(allowlistSources(file.redirectPresets, file.allowedRedirectUris))

function allowed(uri: string) {
  const checked = normaliseRedirectUri(uri)
  return checked.ok && shipped.allows(checked.url)
}

t.test('normalisation lower-cases scheme and host and drops the default port', async (t) => {
  const checked = normaliseRedirectUri('HTTPS://ChatGPT.com:443/connector/oauth/AbC')
  t.ok(checked.ok)
  if (checked.ok) t.equal(checked.uri, 'https://chatgpt.com/connector/oauth/AbC', 'path case is kept')
})

t.test('refuses what parsers could read differently', async (t) => {
  const refused: Record<string, RegExp> = {
    'https://chatgpt.com/connector/oauth/x#frag': /fragment/,
    'https://user@chatgpt.com/connector/oauth/x': /userinfo/,
    'https://chatgpt.com:pw@evil.com/connector/oauth/x': /userinfo/,
    'https://chatgpt.com/connector/oauth/../../evil': /dot segments/,
    'https://chatgpt.com/connector/oauth/./x': /dot segments/,
    'https://chatgpt.com/connector/oauth/%2e%2e/x': /encoded/,
    'https://chatgpt.com/connector/oauth/a%2Fb': /encoded/,
    'https://chatgpt.com/connector/oauth/a%5cb': /encoded/,
    'https://chatgpt.com\\@evil.com/': /backslash/,
    'https://chatgpt.com/connector/oauth/ x': /spaces/,
    'http://chatgpt.com/connector/oauth/x': /https/,
    'javascript://chatgpt.com/%0aalert(1)': /javascript/,
    'data://text/html,hi': /data/,
    '/relative/path': /absolute/,
    'https://chаtgpt.com/connector/oauth/x': /non-ASCII/,
  }
  for (const [uri, reason] of Object.entries(refused)) {
    const checked = normaliseRedirectUri(uri)
    t.equal(checked.ok, false, uri)
    if (!checked.ok) t.match(checked.reason, reason, uri)
  }
  t.equal(normaliseRedirectUri(42).ok, false, 'a non-string')
  t.equal(normaliseRedirectUri('https://a.example/' + 'x'.repeat(3000)).ok, false, 'too long')
})

t.test('the shipped allowlist lets in every real client', async (t) => {
  for (const uri of [
    'https://chatgpt.com/connector/oauth/abc123',
    'https://chatgpt.com/connector_platform_oauth_redirect',
    'https://chat.openai.com/aip/g-123abc/oauth/callback',
    'https://chatgpt.com/aip/g-123abc/oauth/callback',
    'https://claude.ai/api/mcp/auth_callback',
    'https://claude.com/api/mcp/auth_callback',
    'http://localhost:53682/callback',
    'http://127.0.0.1:9999/callback',
    'http://localhost:6274/oauth/callback',
    'http://localhost:6274/oauth/callback/debug',
    'http://127.0.0.1:33418/',
    'http://127.0.0.1/',
    'http://localhost:1234/other',
    'http://[::1]:8080/callback',
    'https://vscode.dev/redirect',
    'https://insiders.vscode.dev/redirect',
    'cursor://anysphere.cursor-mcp/oauth/callback',
  ]) t.ok(allowed(uri), uri)
})

t.test('look-alikes and near misses never match', async (t) => {
  for (const uri of [
    'https://chatgpt.com.evil.com/connector/oauth/abc',
    'https://evil.com/chatgpt.com/connector/oauth/abc',
    'https://evilchatgpt.com/connector/oauth/abc',
    'https://chatgpt.com./connector/oauth/abc',
    'https://chatgpt.com:8443/connector/oauth/abc',
    'https://chatgpt.com/connector/oauth/',
    'https://chatgpt.com/connector/oauth/abc/extra',
    'https://chatgpt.com/connector/oauth/abc?next=https://evil.com',
    'https://sub.claude.ai/api/mcp/auth_callback',
    'https://claude.ai/api/mcp/auth_callback/',
    'http://claude.ai/api/mcp/auth_callback',
    'http://localhost.evil.com/callback',
    'http://127.0.0.1.evil.com/callback',
    // The loopback preset allows any path on http loopback, but not https or other hosts.
    'https://localhost:1234/callback',
    'http://127.0.0.2:1234/callback',
    'cursor://evil/oauth/callback',
    'https://chat.openai.com/aip//oauth/callback',
  ]) t.notOk(allowed(uri), uri)
})

t.test('patterns: wildcards only for whole segments (or their ends) and ports', async (t) => {
  t.throws(() => parsePattern('https://*.chatgpt.com/x'), /whole path segment/)
  t.throws(() => parsePattern('https://chatgpt.com/co*nn'), /whole path segment/)
  t.throws(() => parsePattern('https://chatgpt.com/*conn'), /whole path segment/)
  t.throws(() => parsePattern('https://chatgpt.com/x?a=*'), /whole path segment/)
  t.throws(() => parsePattern('http://example.com/callback'), /https/)
  t.throws(() => parsePattern('https://example.com/**'), /only allowed on loopback/)
  t.throws(() => parsePattern('http://localhost/**/x'), /whole path segment/)
  const prefixed = new RedirectAllowlist(['https://chatgpt.com/aip/g-*/oauth/callback'])
  t.ok(prefixed.allows(new URL('https://chatgpt.com/aip/g-123/oauth/callback')))
  t.notOk(prefixed.allows(new URL('https://chatgpt.com/aip/g-/oauth/callback')), 'the prefix alone is not enough')
  t.notOk(prefixed.allows(new URL('https://chatgpt.com/aip/x-123/oauth/callback')), 'another prefix')
  const below = new RedirectAllowlist(['http://127.0.0.1:*/**'])
  for (const path of ['/', '/callback', '/a/b/c', '/a/b/']) t.ok(below.allows(new URL(`http://127.0.0.1:5000${path}`)), path)
  t.notOk(below.allows(new URL('http://127.0.0.1:5000//x')), 'no empty segment in the middle')
  t.notOk(below.allows(new URL('http://127.0.0.1:5000/cb?x=1')), 'no query')
  const anyPort = new RedirectAllowlist(['https://example.com:*/cb'])
  t.ok(anyPort.allows(new URL('https://example.com:8443/cb')))
  t.ok(anyPort.allows(new URL('https://example.com/cb')))
  t.notOk(anyPort.allows(new URL('https://example.com:8443/cb2')))
})

t.test('a loopback redirect may differ from the registered one in port only', async (t) => {
  t.ok(sameRedirectUri('http://127.0.0.1/callback', new URL('http://127.0.0.1:5000/callback')))
  t.ok(sameRedirectUri('http://localhost:1/callback', new URL('http://localhost:2/callback')))
  t.notOk(sameRedirectUri('http://127.0.0.1/callback', new URL('http://localhost:5000/callback')), 'host differs')
  t.notOk(sameRedirectUri('http://127.0.0.1/callback', new URL('http://127.0.0.1:5000/other')), 'path differs')
  t.notOk(sameRedirectUri('https://claude.ai/api/mcp/auth_callback', new URL('https://claude.ai:444/api/mcp/auth_callback')), 'not loopback')
  t.ok(sameRedirectUri('https://claude.ai/api/mcp/auth_callback', new URL('https://claude.ai/api/mcp/auth_callback')))
})
