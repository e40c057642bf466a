/**
 * Blocks: ops refuse a client by its client id, by the host of any of its
 * redirect URIs, or by a pattern on the name it registered with. Pure: the
 * Admin API checks and normalises what ops send (`parseBlockRule`), and the
 * endpoints ask whether a client matches (`matchingBlock`) with the blocks
 * the grant registry holds.
 *
 * A name pattern is a glob, never a regular expression: `*` stands for any
 * run of characters, `?` for one, everything else for itself, compared
 * without regard to case. It matches in time bounded by the lengths of the
 * pattern and the name, whatever ops or a client send.
 */

/** What a block names: exactly one of the three. */
export type BlockRule = { client_id: string } | { redirect_host: string } | { client_name_pattern: string }

/** Any record that carries its rule's key (a stored block, a rule being created). */
export interface BlockRuleFields {
  client_id?: string | undefined
  redirect_host?: string | undefined
  client_name_pattern?: string | undefined
}

/** What a block is matched against: a registered client, or a registration before it has an id. */
export interface BlockedCandidate {
  client_id?: string | undefined
  client_name?: string | undefined
  redirect_uris: readonly string[]
}

export const MAX_PATTERN_LENGTH = 200
const MAX_CLIENT_ID_LENGTH = 8192

export type ParsedRule = { ok: true; rule: BlockRule } | { ok: false; reason: string }

/**
 * Checks what ops send and normalises it: a redirect host is lowercased, its
 * default port dropped (`Evil.Example:443` → `evil.example`); a host with
 * another port blocks only that port.
 */
export function parseBlockRule(fields: BlockRuleFields): ParsedRule {
  const given = (['client_id', 'redirect_host', 'client_name_pattern'] as const).filter((key) => fields[key] !== undefined)
  if (given.length !== 1) return { ok: false, reason: 'exactly one of client_id, redirect_host, client_name_pattern is required' }
  if (fields.client_id !== undefined) {
    if (fields.client_id === '' || fields.client_id.length > MAX_CLIENT_ID_LENGTH) return { ok: false, reason: `client_id: must be 1 to ${MAX_CLIENT_ID_LENGTH} characters` }
    return { ok: true, rule: { client_id: fields.client_id } }
  }
  if (fields.redirect_host !== undefined) {
    const host = normaliseHost(fields.redirect_host)
    return host === undefined
      ? { ok: false, reason: 'redirect_host: must be a host name, optionally with a port (e.g. evil.example or evil.example:8443), without scheme or path' }
      : { ok: true, rule: { redirect_host: host } }
  }
  const pattern = fields.client_name_pattern!
  if (pattern === '' || pattern.length > MAX_PATTERN_LENGTH) return { ok: false, reason: `client_name_pattern: must be 1 to ${MAX_PATTERN_LENGTH} characters` }
  if (/^\*+$/.test(pattern)) return { ok: false, reason: 'client_name_pattern: would match every client; name at least one character' }
  return { ok: true, rule: { client_name_pattern: pattern } }
}

function normaliseHost(value: string): string | undefined {
  if (value === '' || value.length > 300 || /[/?#@\\\s]/.test(value)) return undefined
  if (!URL.canParse(`https://${value}`)) return undefined
  const url = new URL(`https://${value}`)
  return url.pathname === '/' && !url.search && !url.hash ? url.host : undefined
}

/** Whether `rule` refuses `candidate`. */
export function blockMatches(rule: BlockRuleFields, candidate: BlockedCandidate): boolean {
  if (rule.client_id !== undefined) return candidate.client_id === rule.client_id
  if (rule.redirect_host !== undefined) {
    const host = rule.redirect_host
    return candidate.redirect_uris.some((uri) => redirectHosts(uri).includes(host))
  }
  if (rule.client_name_pattern !== undefined) return globMatches(rule.client_name_pattern, candidate.client_name ?? '')
  return false
}

/** The first block that refuses `candidate`, or undefined. */
export function matchingBlock<B extends BlockRuleFields>(blocks: Iterable<B>, candidate: BlockedCandidate): B | undefined {
  for (const block of blocks) if (blockMatches(block, candidate)) return block
  return undefined
}

/** The host of a redirect URI as a block may name it: with its port, and without when the port is the default or absent. */
function redirectHosts(uri: string): string[] {
  if (!URL.canParse(uri)) return []
  const url = new URL(uri)
  // A custom scheme (cursor://) keeps its host as written.
  const host = url.host.toLowerCase()
  const hostname = url.hostname.toLowerCase()
  return host === hostname ? [host] : [host, hostname]
}

/**
 * `*` any run of characters (none included), `?` exactly one, compared
 * case-insensitively by code point. The classic two-pointer match: on a
 * mismatch it resumes after the last `*`, so it never backtracks further and
 * runs in O(pattern × name) at worst.
 */
export function globMatches(pattern: string, name: string): boolean {
  const p = Array.from(pattern.toLowerCase())
  const s = Array.from(name.toLowerCase())
  let pi = 0
  let si = 0
  let star = -1
  let resume = 0
  while (si < s.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === s[si]))) {
      pi++
      si++
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++
      resume = si
    } else if (star !== -1) {
      pi = star + 1
      si = ++resume
    } else {
      return false
    }
  }
  while (pi < p.length && p[pi] === '*') pi++
  return pi === p.length
}

/** A block's rule in words, for the log and the CLI: `client_id=…`, `redirect_host=…`, `client_name_pattern=…`. */
export function describeRule(rule: BlockRuleFields): string {
  if (rule.client_id !== undefined) return `client_id ${rule.client_id.length > 80 ? `${rule.client_id.slice(0, 77)}...` : rule.client_id}`
  if (rule.redirect_host !== undefined) return `redirect host ${rule.redirect_host}`
  return `client name ${rule.client_name_pattern ?? ''}`
}
