/**
 * Whether a block applies to a client: pure, so the registry (which caches
 * the blocks), the Admin API (which checks what ops send) and the endpoints
 * that refuse blocked clients read one rule. A block names a client id
 * (exactly), a redirect host (any of the client's redirect URIs on that host,
 * any port), or a pattern on the name the client gave itself.
 *
 * A name pattern is a glob, never a regular expression: `*` stands for any
 * run of characters, `?` for one, everything else for itself, compared with
 * the whole name without regard to case. It matches in time bounded by the
 * lengths of the pattern and the name, whatever ops or a client send.
 */
import type { RegisteredClient } from '../clients/client.ts'
import { OAuthError } from '../errors.ts'
import type { Block, BlockKind } from '../grants/grant.ts'

/** What a block is matched against: the client's id, the hosts of its redirect URIs, its name. */
export interface BlockSubject {
  clientId?: string | undefined
  /** Redirect URIs (their hosts are matched) or hosts themselves. */
  redirectUris?: readonly string[] | undefined
  redirectHost?: string | undefined
  clientName?: string | undefined
}

export const MAX_PATTERN_LENGTH = 200
const MAX_CLIENT_ID_LENGTH = 8192
const MAX_HOST_LENGTH = 253

/** The host of a redirect URI, lower case; the value itself when it is not a URL (already a host). */
export function hostOf(redirectUri: string): string {
  return (URL.canParse(redirectUri) ? new URL(redirectUri).hostname : redirectUri).toLowerCase()
}

/** A block's value as stored: hosts lower case, the rest as given (trimmed). */
export function normaliseBlockValue(kind: BlockKind, value: string): string {
  const trimmed = value.trim()
  return kind === 'redirect_host' ? hostOf(trimmed) : trimmed
}

export type CheckedBlockValue = { ok: true; value: string } | { ok: false; reason: string }

/**
 * Checks a block's value as ops send it, before anything is stored, and
 * returns it normalised; the reason names the field and the rule.
 */
export function checkBlockValue(kind: BlockKind, value: string): CheckedBlockValue {
  const trimmed = value.trim()
  switch (kind) {
    case 'client_id':
      return trimmed === '' || trimmed.length > MAX_CLIENT_ID_LENGTH ? { ok: false, reason: `client_id: must be 1 to ${MAX_CLIENT_ID_LENGTH} characters` } : { ok: true, value: trimmed }
    case 'redirect_host':
      return isHostName(trimmed)
        ? { ok: true, value: normaliseBlockValue(kind, trimmed) }
        : { ok: false, reason: 'redirect_host: must be a host name alone (e.g. evil.example or 203.0.113.7), without scheme, port or path' }
    case 'client_name_pattern':
      if (trimmed === '' || trimmed.length > MAX_PATTERN_LENGTH) return { ok: false, reason: `client_name_pattern: must be 1 to ${MAX_PATTERN_LENGTH} characters` }
      if (/^\*+$/.test(trimmed)) return { ok: false, reason: 'client_name_pattern: would match every client with a name; name at least one character besides *' }
      return { ok: true, value: trimmed }
  }
}

/** A host as a URL would carry it: what `https://<value>/` parses back to, and nothing more. */
function isHostName(value: string): boolean {
  if (value === '' || value.length > MAX_HOST_LENGTH || /[/?#@\\\s]/.test(value)) return false
  if (!URL.canParse(`https://${value}/`)) return false
  const url = new URL(`https://${value}/`)
  return url.port === '' && url.host === url.hostname && !/:\d*$/.test(value.replace(/^\[.*\]$/, ''))
}

export function blockApplies(block: Pick<Block, 'kind' | 'value'>, subject: BlockSubject): boolean {
  switch (block.kind) {
    case 'client_id':
      return subject.clientId === block.value
    case 'redirect_host': {
      const hosts = [...(subject.redirectUris ?? []), ...(subject.redirectHost === undefined ? [] : [subject.redirectHost])].map(hostOf)
      return hosts.includes(block.value)
    }
    case 'client_name_pattern':
      return subject.clientName !== undefined && globMatches(block.value, subject.clientName)
  }
}

/** What a block is matched against for a client the gateway knows. */
export function clientSubject(client: Pick<RegisteredClient, 'client_id' | 'client_name' | 'redirect_uris'>): BlockSubject {
  return { clientId: client.client_id, redirectUris: client.redirect_uris, clientName: client.client_name }
}

/** What the refused client (and on /authorize, the user) is told: the reason ops gave. */
export function blockedDescription(block: Pick<Block, 'reason'>): string {
  return `this app is blocked by the administrators of this gateway: ${block.reason}`
}

const BLOCKED_HINT = 'The administrators of this sign-in service have blocked this app. Remove the connector in the app; ask them if you think this is a mistake.'

/**
 * How a sign-in a block refuses ends (/authorize, the consent answer, the
 * callback): the error page naming the reason, before the redirect URI is
 * trusted, so the browser is never sent to the blocked client.
 */
export function blockedSignIn(block: Pick<Block, 'reason' | 'blockId'>): OAuthError {
  const description = blockedDescription(block)
  return new OAuthError(400, 'invalid_client', description.charAt(0).toUpperCase() + description.slice(1), { hint: BLOCKED_HINT, details: { block_id: block.blockId } })
}

/** The first block that applies, if any. */
export function firstBlockApplying(blocks: readonly Block[], subject: BlockSubject): Block | undefined {
  return blocks.find((block) => blockApplies(block, subject))
}

/**
 * `*` any run of characters (none included), `?` exactly one, compared
 * case-insensitively by code point, against the whole name. The classic
 * two-pointer match: on a mismatch it resumes after the last `*`, never
 * further back, so it runs in O(pattern × name) at worst.
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
