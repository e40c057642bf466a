/**
 * The records that put connections under control: a grant per connection
 * (one successful code exchange and the refreshes after it), blocks that ops
 * set, and the clients the gateway has met. Times are whole seconds since the
 * epoch. These are the shapes the registry (registry.ts) hands out and
 * storage (state/grant-storage.ts) keeps; nothing here reaches the wire as is.
 */
import type { ApplicationType } from '../policy/application-type.ts'

/** Who the upstream says signed in (upstream.userClaim), with what it tells about them. */
export interface GrantUser {
  /** The upstream's identifier: the ID token's, userinfo's or introspection's `upstream.userClaim` claim (default `sub`). */
  id: string
  name?: string | undefined
  email?: string | undefined
}

/** Why a grant ended: what `oauth_gateway_grants_ended_total{reason}` counts. */
export type EndReason = 'revoked_by_user' | 'revoked_by_admin' | 'block' | 'expired' | 'upgrade'

export const END_REASONS: readonly EndReason[] = ['revoked_by_user', 'revoked_by_admin', 'block', 'expired', 'upgrade']

/** One connection: what a client was given for one user, until it is revoked or expires. */
export interface Grant {
  /** Opaque, unguessable, sortable by creation (listings are in creation order). */
  grantId: string
  clientId: string
  /** The client's own name, as it registered it or its metadata document states it. */
  clientName?: string | undefined
  /**
   * True when nothing vouches for the name: a registered client names itself
   * (RFC 7591 §5: shown to users as unverified). A metadata document's name is
   * published at the client's own https URL, so its host vouches for it.
   */
  unverified: boolean
  /** The host of the redirect URI the code went to (chatgpt.com, claude.ai, 127.0.0.1 …). */
  redirectHost: string
  /** The client preset its redirect URI belongs to (policy/presets.ts), or 'other'. */
  preset: string
  /** Absent when the upstream tells no identity (see docs/connections.md). */
  user?: GrantUser | undefined
  /** The scope granted, in the client's names. */
  scope?: string | undefined
  createdAt: number
  lastUsedAt: number
  /** Successful refreshes so far. */
  refreshCount: number
  /** When it ends at the latest: grants.maxAgeDays after creation, or the current upstream refresh token's own lifetime when shorter. */
  expiresAt: number
  /** When it ends unless used again: lastUsedAt + grants.maxIdleDays, never after expiresAt. Storage expires it then. */
  activeUntil: number
  /**
   * The upstream refresh token, sealed at rest (seal.ts purpose 'stored').
   * Never in listings (GrantSummary), never logged.
   */
  upstreamRefreshToken: string
  /**
   * Bumped each time the upstream rotates its refresh token and the client
   * gets a new one: a refresh token naming an older generation is spent
   * (RFC 9700 §4.14.2), as the upstream's own rotated token would be.
   */
  generation: number
  /** Hashes of the access tokens issued under it that may still be live, so front mode can refuse them once it ends. */
  accessTokens: AccessTokenMark[]
  /** The flow it came from, for log lines. */
  flow?: string | undefined
  /** The RFC 8707 resource bound to it. */
  resource?: string | undefined
}

/** A grant as listings show it: never the upstream refresh token or access token hashes. */
export type GrantSummary = Omit<Grant, 'upstreamRefreshToken' | 'accessTokens' | 'generation' | 'flow' | 'resource'>

export interface AccessTokenMark {
  /** sha-256 of the access token, base64url: the token itself is never kept. */
  hash: string
  expiresAt: number
}

export type BlockKind = 'client_id' | 'redirect_host' | 'client_name_pattern'

export const BLOCK_KINDS: readonly BlockKind[] = ['client_id', 'redirect_host', 'client_name_pattern']

/** What ops refuse: one client, every client redirecting to a host, or every client whose name matches. */
export interface Block {
  blockId: string
  kind: BlockKind
  /** A client id, a host name (lower case), or a name pattern (policy/blocks.ts: `*` matches any run, case-insensitive). */
  value: string
  reason: string
  createdAt: number
}

/** A client the gateway has met: it registered, presented a metadata document, or holds a grant. */
export interface ClientRecord {
  clientId: string
  clientName?: string | undefined
  redirectUris: string[]
  firstSeenAt: number
  lastUsedAt: number
  /** `web` or `native` as first known (SEP-837): a later sighting never changes it. Absent in records kept before it was. */
  applicationType?: ApplicationType | undefined
}

/** A client record with what listings add. */
export interface ClientSummary extends ClientRecord {
  /** Live grants it holds. */
  grants: number
}

/** A grant that ended (or a legacy refresh token spent), kept until nothing issued under it can be used any more. */
export interface Revocation {
  /** `grant:<grantId>`, `access:<hash>` or `legacy:<hash>`. */
  key: string
  reason: EndReason
  endedAt: number
  expiresAt: number
}

/** One page of a listing; `nextCursor` is opaque and absent on the last page. */
export interface Page<T> {
  items: T[]
  nextCursor?: string | undefined
}

/** What a listing asks for: at most `limit` items after `cursor` (from the previous page). */
export interface PageRequest {
  limit?: number | undefined
  cursor?: string | undefined
}

/** What ending a grant did: whether it ended here, and what the upstream did with its refresh token (RFC 7009). */
export interface RevokeOutcome {
  ended: boolean
  /** 'unsupported': the upstream has no revocation endpoint; 'failed': it has one and the call failed (logged). */
  upstreamRevocation: UpstreamRevocation
}

export type UpstreamRevocation = 'revoked' | 'unsupported' | 'failed'

/** Who ends a grant. */
export type Actor = 'admin' | 'user'
