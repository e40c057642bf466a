/**
 * Whether a block applies to a client: pure, so the registry (which caches
 * the blocks) and the endpoints that refuse blocked clients read one rule.
 */
import type { Block, BlockKind } from '../grants/grant.ts'

/** What a block is matched against: the client's id, the hosts of its redirect URIs, its name. */
export interface BlockSubject {
  clientId?: string | undefined
  /** Redirect URIs (their hosts are matched) or hosts themselves. */
  redirectUris?: readonly string[] | undefined
  redirectHost?: string | undefined
  clientName?: string | undefined
}

/** The host of a redirect URI, lower case; the value itself when it is not a URL (already a host). */
export function hostOf(redirectUri: string): string {
  return (URL.canParse(redirectUri) ? new URL(redirectUri).hostname : redirectUri).toLowerCase()
}

/** A client_name_pattern: `*` matches any run of characters, everything else itself, case-insensitive, the whole name. */
export function namePattern(pattern: string): RegExp {
  const escaped = pattern.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')
  return new RegExp(`^${escaped}$`, 'is')
}

/** A block's value as stored: hosts lower case, the rest as given (trimmed). */
export function normaliseBlockValue(kind: BlockKind, value: string): string {
  const trimmed = value.trim()
  return kind === 'redirect_host' ? hostOf(trimmed) : trimmed
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
      return subject.clientName !== undefined && namePattern(block.value).test(subject.clientName)
  }
}

/** The first block that applies, if any. */
export function firstBlockApplying(blocks: readonly Block[], subject: BlockSubject): Block | undefined {
  return blocks.find((block) => blockApplies(block, subject))
}
