/**
 * The client presets' redirect URIs, property-based (fast-check): every
 * generated URI a real client uses is allowed by its preset, and no generated
 * look-alike of one (host prefix and suffix tricks, userinfo, dot segments,
 * encoded slashes, case changes in the path, trailing dots, homoglyphs, extra
 * or missing segments, ports on https hosts, fragments, control characters)
 * matches any preset pattern.
 */
import t from 'tap'
import fc from 'fast-check'
import { PRESET_NAMES, REDIRECT_PRESETS, allowlistSources, presetsAllowing, refusalReason, type PresetName, type PresetSwitches } from '../../gateway/policy/presets.ts'
import { RedirectAllowlist, normaliseRedirectUri } from '../../gateway/policy/redirect-uri.ts'

const ALL_ON = Object.fromEntries(PRESET_NAMES.map((name) => [name, true])) as PresetSwitches
const everyPreset = new RedirectAllowlist(allowlistSources(ALL_ON, []))
/** The Inspector's URIs are loopback URIs: a change of their path is only a look-alike without the loopback preset. */
const everyPresetButLoopback = new RedirectAllowlist(allowlistSources({ ...ALL_ON, loopback: false }, []))
const RUNS = { numRuns: 400 }

function allowedByPresets(shape: Shape, uri: string): boolean {
  const checked = normaliseRedirectUri(uri)
  return checked.ok && (shape.preset === 'inspector' ? everyPresetButLoopback : everyPreset).allows(checked.url)
}

/** A redirect URI as its parts, so that mutations know which path segments the preset fixes. */
interface Shape {
  preset: PresetName
  scheme: string
  host: string
  /** '' for none. */
  port: string
  segments: string[]
  /** Segments the pattern fixes letter for letter (a case change or removal must not match). */
  fixed: boolean[]
  /** Loopback: any path is allowed, so path changes are not look-alikes. */
  anyPath: boolean
}

function render(shape: Shape): string {
  return `${shape.scheme}://${shape.host}${shape.port ? `:${shape.port}` : ''}/${shape.segments.join('/')}`
}

/** A callback id as clients make them: unreserved characters, never a dot segment. */
const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,24}$/)
const port = fc.integer({ min: 1, max: 65535 }).map(String)
const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/)

const fixedShape = (preset: PresetName, scheme: string, host: string, path: string[]) =>
  fc.constant<Shape>({ preset, scheme, host, port: '', segments: path, fixed: path.map(() => true), anyPath: false })

const shapes: fc.Arbitrary<Shape> = fc.oneof(
  id.map((x): Shape => ({ preset: 'chatgpt', scheme: 'https', host: 'chatgpt.com', port: '', segments: ['connector', 'oauth', x], fixed: [true, true, false], anyPath: false })),
  fixedShape('chatgpt', 'https', 'chatgpt.com', ['connector_platform_oauth_redirect']),
  fc.tuple(fc.constantFrom('chat.openai.com', 'chatgpt.com'), id).map(([host, x]): Shape => ({
    preset: 'chatgpt', scheme: 'https', host, port: '', segments: ['aip', `g-${x}`, 'oauth', 'callback'], fixed: [true, false, true, true], anyPath: false,
  })),
  fixedShape('claude', 'https', 'claude.ai', ['api', 'mcp', 'auth_callback']),
  fixedShape('claude', 'https', 'claude.com', ['api', 'mcp', 'auth_callback']),
  fc.tuple(fc.constantFrom('localhost', '127.0.0.1', '[::1]'), fc.option(port, { nil: '' }), fc.array(id, { maxLength: 4 }), fc.boolean()).map(([host, p, path, slash]): Shape => {
    const segments = slash || path.length === 0 ? [...path, ''] : path
    return { preset: 'loopback', scheme: 'http', host, port: p, segments, fixed: segments.map(() => false), anyPath: true }
  }),
  fixedShape('vscodeWeb', 'https', 'vscode.dev', ['redirect']),
  fixedShape('vscodeWeb', 'https', 'insiders.vscode.dev', ['redirect']),
  fixedShape('cursor', 'cursor', 'anysphere.cursor-mcp', ['oauth', 'callback']),
  fc.tuple(port, fc.boolean()).map(([p, debug]): Shape => {
    const segments = debug ? ['oauth', 'callback', 'debug'] : ['oauth', 'callback']
    return { preset: 'inspector', scheme: 'http', host: 'localhost', port: p, segments, fixed: segments.map(() => true), anyPath: false }
  }),
)

const isIp = (host: string) => /^[\d.]+$/.test(host) || host.startsWith('[')

t.test('every preset in REDIRECT_PRESETS has a generator here', async (t) => {
  const seen = new Set(fc.sample(shapes, 2000).map((shape) => shape.preset))
  t.same([...seen].sort(), [...PRESET_NAMES].sort())
})

t.test('legitimate URIs of each client are allowed, by their own preset', async (t) => {
  // Scheme and host are case-insensitive and https's default port is no port (RFC 3986 §6.2.2, §6.2.3).
  const variants = fc.constantFrom('as is', 'upper-case scheme', 'upper-case host', 'default port')
  fc.assert(
    fc.property(shapes, variants, (shape, variant) => {
      let uri = render(shape)
      if (variant === 'upper-case scheme') uri = uri.replace(shape.scheme, shape.scheme.toUpperCase())
      if (variant === 'upper-case host') uri = uri.replace(`//${shape.host}`, `//${shape.host.toUpperCase()}`)
      if (variant === 'default port' && shape.scheme === 'https') uri = uri.replace(`//${shape.host}`, `//${shape.host}:443`)
      const checked = normaliseRedirectUri(uri)
      if (!checked.ok) return false
      const presets = presetsAllowing(checked.url)
      // The Inspector's URIs are loopback URIs too.
      const expected = shape.preset === 'inspector' ? ['loopback', 'inspector'] : [shape.preset]
      return everyPreset.allows(checked.url) && presets.length === expected.length && expected.every((name) => presets.includes(name as PresetName))
    }),
    RUNS,
  )
  t.pass('checked')
})

type Mutation = (shape: Shape, pick: { n: number; text: string }) => string | undefined

const homoglyphs: Record<string, string> = { a: 'а', c: 'с', e: 'е', o: 'о', p: 'р', i: 'і', x: 'х', l: 'ӏ', d: 'ԁ' }

/** Each returns a URI that must not be allowed, or undefined when it does not apply to the shape. */
const mutations: Record<string, Mutation> = {
  'host with a suffix domain': (s, { text }) => render({ ...s, host: `${s.host}.${text}.com` }),
  'host with an encoded-dot suffix': (s, { text }) => render({ ...s, host: `${s.host}%2E${text}.com` }),
  'host with a prefix': (s, { text }) => (isIp(s.host) ? undefined : render({ ...s, host: `${text}${s.host}` })),
  'a subdomain of the host': (s, { text }) => render({ ...s, host: `${text}.${s.host}` }),
  'host with a trailing dot': (s) => (isIp(s.host) ? undefined : render({ ...s, host: `${s.host}.` })),
  'a homoglyph in the host': (s, { n }) => {
    const letters = [...s.host].map((ch, i) => [ch, i] as const).filter(([ch]) => homoglyphs[ch])
    if (!letters.length) return undefined
    const [ch, at] = letters[n % letters.length]!
    return render({ ...s, host: s.host.slice(0, at) + homoglyphs[ch] + s.host.slice(at + 1) })
  },
  'a homoglyph host in punycode': (s, { n }) => {
    const letters = [...s.host].map((ch, i) => [ch, i] as const).filter(([ch]) => homoglyphs[ch])
    if (!letters.length || s.scheme !== 'https') return undefined
    const [ch, at] = letters[n % letters.length]!
    return render({ ...s, host: new URL(`https://${s.host.slice(0, at)}${homoglyphs[ch]}${s.host.slice(at + 1)}/`).hostname })
  },
  'userinfo before the host': (s, { text }) => render({ ...s, host: `${text}@${s.host}` }),
  'the host as userinfo of another': (s, { text }) => render({ ...s, host: `${s.host}@${text}.com` }),
  'user and password': (s, { text }) => render({ ...s, host: `${text}:${text}@${s.host}` }),
  'a dot segment': (s, { n }) => render({ ...s, segments: insertAt(s.segments, n, n % 2 ? '..' : '.') }),
  'an encoded dot segment': (s, { n }) => render({ ...s, segments: insertAt(s.segments, n, ['%2e%2e', '%2E', '.%2e', '%2e.'][n % 4]!) }),
  'an encoded slash': (s, { n }) => (s.segments.length < 2 ? undefined : encodeSeparator(s, n, ['%2F', '%2f', '%5C', '%5c'][n % 4]!)),
  'a backslash for a slash': (s, { n }) => (s.segments.length < 2 ? undefined : encodeSeparator(s, n, '\\')),
  'an empty segment': (s, { n }) => (s.segments.length < 1 ? undefined : render({ ...s, segments: insertAt(s.segments.slice(0, -1), n, '').concat(s.segments.slice(-1)) })),
  'a case change in a fixed segment': (s, { n }) => {
    const candidates = s.segments.map((segment, i) => [segment, i] as const).filter(([segment, i]) => s.fixed[i] && /[a-z]/.test(segment))
    if (!candidates.length) return undefined
    const [segment, i] = candidates[n % candidates.length]!
    const letter = [...segment].findIndex((ch) => /[a-z]/.test(ch))
    const changed = segment.slice(0, letter) + segment[letter]!.toUpperCase() + segment.slice(letter + 1)
    return render({ ...s, segments: s.segments.map((x, j) => (j === i ? changed : x)) })
  },
  'an extra segment': (s, { n, text }) => (s.anyPath ? undefined : render({ ...s, segments: insertAt(s.segments, n, text) })),
  'a trailing slash': (s) => (s.anyPath ? undefined : render({ ...s, segments: [...s.segments, ''] })),
  'a missing segment': (s, { n }) => {
    if (s.anyPath) return undefined
    // Without its last segment the Inspector's debug redirect is its normal one.
    const droppable = s.preset === 'inspector' ? s.fixed.slice(0, 2) : s.fixed
    const fixedAt = droppable.map((f, i) => (f ? i : -1)).filter((i) => i >= 0)
    if (!fixedAt.length) return undefined
    const drop = fixedAt[n % fixedAt.length]!
    return render({ ...s, segments: s.segments.filter((_, i) => i !== drop) })
  },
  'a port on a non-loopback host': (s, { n }) => (s.scheme === 'http' || n % 65535 === 442 ? undefined : render({ ...s, port: String((n % 65535) + 1) })),
  'another scheme': (s, { n }) => render({ ...s, scheme: { https: ['http', 'wss', 'ftp'], http: ['https', 'ws', 'file'], cursor: ['cursors', 'vscode', 'https'] }[s.scheme as 'https' | 'http' | 'cursor']![n % 3]! }),
  'a fragment': (s, { text }) => `${render(s)}#${text}`,
  'a query': (s, { text }) => `${render(s)}?next=${text}`,
  'a control character a URL parser would drop': (s, { n }) => {
    const uri = render(s)
    const at = 1 + (n % (uri.length - 1))
    return uri.slice(0, at) + ['\t', '\n', '\r'][n % 3] + uri.slice(at)
  },
  'surrounding spaces': (s) => ` ${render(s)} `,
  'a scheme-relative or relative form': (s, { n }) => (n % 2 ? `//${s.host}/${s.segments.join('/')}` : `/${s.segments.join('/')}`),
}

function insertAt(segments: string[], n: number, value: string): string[] {
  const at = n % (segments.length + 1)
  return [...segments.slice(0, at), value, ...segments.slice(at)]
}

/** Joins two neighbouring segments with `separator` instead of `/`. */
function encodeSeparator(s: Shape, n: number, separator: string): string {
  const at = n % (s.segments.length - 1)
  const joined = [...s.segments.slice(0, at), `${s.segments[at]}${separator}${s.segments[at + 1]}`, ...s.segments.slice(at + 2)]
  return render({ ...s, segments: joined })
}

for (const [name, mutate] of Object.entries(mutations)) {
  t.test(`look-alikes never match a preset: ${name}`, async (t) => {
    let applied = 0
    fc.assert(
      fc.property(shapes, fc.nat(), label, (shape, n, text) => {
        const uri = mutate(shape, { n, text })
        if (uri === undefined) return true
        applied++
        return !allowedByPresets(shape, uri)
      }),
      RUNS,
    )
    t.ok(applied > 0, `the mutation applied to ${applied} generated URIs`)
  })
}

t.test('a refusal names the switched-off preset that would allow the URI', async (t) => {
  const onlyClaude = { ...Object.fromEntries(PRESET_NAMES.map((name) => [name, false])), claude: true } as PresetSwitches
  t.match(refusalReason(new URL('cursor://anysphere.cursor-mcp/oauth/callback'), onlyClaude), /cursor preset, which is switched off/)
  t.match(refusalReason(new URL('http://localhost:6274/oauth/callback'), onlyClaude), /loopback, inspector preset/)
  t.match(refusalReason(new URL('https://evil.example/cb'), onlyClaude), /matches no enabled preset/)
})

t.test('the preset lists are the patterns the docs and the config describe', async (t) => {
  // A change here is a change of what clients may do: keep README.md and docs/clients.md "Supported clients" in step.
  t.same(REDIRECT_PRESETS, {
    chatgpt: ['https://chatgpt.com/connector/oauth/*', 'https://chatgpt.com/connector_platform_oauth_redirect', 'https://chat.openai.com/aip/g-*/oauth/callback', 'https://chatgpt.com/aip/g-*/oauth/callback'],
    claude: ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback'],
    loopback: ['http://localhost:*/**', 'http://127.0.0.1:*/**', 'http://[::1]:*/**'],
    vscodeWeb: ['https://vscode.dev/redirect', 'https://insiders.vscode.dev/redirect'],
    cursor: ['cursor://anysphere.cursor-mcp/oauth/callback'],
    inspector: ['http://localhost:*/oauth/callback', 'http://localhost:*/oauth/callback/debug'],
  })
})
