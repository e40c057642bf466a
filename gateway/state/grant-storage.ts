/**
 * Where grants, blocks, revocations and the client list are kept, durably:
 * a SQLite file by default (sqlite-grant-storage.ts), Redis when REDIS_URL is
 * set (redis-grant-storage.ts). The registry (grants/registry.ts) is the only
 * user; it holds the rules, storage only keeps records and answers listings.
 * Every method is one round trip to Redis, so a refresh costs a known number.
 *
 * Listings are in key order (grant ids sort by creation) after an exclusive
 * `after` key; the registry turns keys into opaque cursors.
 */
import { createHash } from 'node:crypto'
import type { Block, ClientRecord, ClientSummary, Grant, Revocation } from '../grants/grant.ts'

export interface GrantFilter {
  userId?: string | undefined
  clientId?: string | undefined
}

export interface KeyPage<T> {
  items: T[]
  /** The key of the last item, when more may follow. */
  last?: string | undefined
}

export interface GrantStorage {
  /** Stores a new grant (and indexes it by user and client). */
  createGrant(grant: Grant): Promise<void>
  /** Many at once, for imports and tests; one transaction. */
  createGrants(grants: readonly Grant[]): Promise<void>
  getGrant(grantId: string): Promise<Grant | undefined>
  /**
   * Replaces a grant only while its generation is still `expectedGeneration`
   * (compare and set): false when it ended or another refresh got there first.
   */
  updateGrant(grant: Grant, expectedGeneration: number): Promise<boolean>
  /**
   * Ends a grant in one step: removes it and writes `revocations` (its own
   * and its access tokens'), only when it exists and, with `userId`, belongs
   * to that user. Returns the removed grant, undefined when nothing ended.
   */
  endGrant(grantId: string, revocations: (grant: Grant) => Revocation[], userId?: string): Promise<Grant | undefined>
  /** Ids of grants matching the filter, in key order after `after`, at most `limit`. */
  listGrants(filter: GrantFilter, limit: number, after?: string): Promise<KeyPage<Grant>>
  countGrants(): Promise<number>

  /** Writes revocations that are not there yet (an existing one keeps its first reason). */
  addRevocations(revocations: readonly Revocation[]): Promise<void>
  /** The live revocation under a key, if any. */
  getRevocation(key: string): Promise<Revocation | undefined>
  /** Writes the revocation only when none lives under its key: true for the first writer (a legacy token used once). */
  addRevocationOnce(revocation: Revocation): Promise<boolean>
  /** Removes the revocation under a key, if any (a legacy token's mark taken back when its upgrade could not start). */
  removeRevocation(key: string): Promise<void>

  addBlock(block: Block): Promise<void>
  /** False when there was no such block. */
  removeBlock(blockId: string): Promise<boolean>
  listBlocks(): Promise<Block[]>

  /** Inserts the client, or updates its name, redirect URIs and last use while keeping its first_seen and first known application type. */
  recordClient(client: ClientRecord): Promise<void>
  /** Clients in key order with their live grant counts. */
  listClients(limit: number, after?: string): Promise<KeyPage<ClientSummary>>

  /** Removes expired grants, revocations and whatever indexes them; returns the grants that expired. */
  purgeExpired(now: number): Promise<Grant[]>
  /** Whether the storage answers (readiness). */
  ping(): Promise<boolean>
  close(): Promise<void>
}

/** How storage indexes a client: its id can be kilobytes (a sealed registration), so a short hash of it. */
export function clientKey(clientId: string): string {
  return createHash('sha256').update(clientId).digest('base64url').slice(0, 22)
}
