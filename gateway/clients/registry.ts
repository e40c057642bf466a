/**
 * The clients the gateway knows. Registered clients (RFC 7591): a client id
 * is the client's registration, sealed with GATEWAY_SECRET, so any replica
 * that shares the secret knows every client and a restart loses none; a
 * confidential client's secret is a MAC of its id, so nothing about a client
 * is stored anywhere. Clients whose id is an https URL publish their own
 * metadata there (metadata-documents.ts).
 * In registration passthrough the id also seals the client's own upstream
 * client, id and secret, which only the gateway can read.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { JSONWebKeySet } from 'jose'
import { ClientMetadataError, isClientIdUrl, type ClientMetadataDocuments } from './metadata-documents.ts'
import type { Sealer } from '../state/seal.ts'
import { nowSeconds } from '../state/seal.ts'
import type { UpstreamClient } from '../upstream/registration.ts'
import type { AuthMethod, RegisteredClient } from './client.ts'
import { settleApplicationType, type ApplicationType } from '../policy/application-type.ts'

/** What looking up a client id gives: the client, or why it cannot be used, in words for the user. */
export type ClientLookup = { ok: true; client: RegisteredClient } | { ok: false; reason: string; hint?: string }

/** What the sealed client id holds; short keys keep the id short. */
interface SealedClient {
  r: string[]
  m: AuthMethod
  g: string[]
  n?: string | undefined
  s?: string | undefined
  /** application_type; absent in ids sealed before it was kept, and then settled from the redirect URIs. */
  a?: ApplicationType | undefined
  t: number
  /** Makes two identical registrations two different clients. */
  j: string
  /** The upstream client: id, secret, authentication method. */
  u?: { i: string; s?: string | undefined; m: UpstreamClient['authMethod'] } | undefined
}

/** Registrations longer than this would make client ids too long for a URL query. */
const MAX_CLIENT_ID_LENGTH = 4096

export class ClientRegistry {
  readonly #sealer: Sealer
  readonly #documents: ClientMetadataDocuments | undefined

  /** `documents` is absent when client metadata documents are switched off. */
  constructor(sealer: Sealer, documents?: ClientMetadataDocuments) {
    this.#sealer = sealer
    this.#documents = documents
  }

  /**
   * Returns the registered client and, for a confidential one, its secret;
   * undefined when it is too large. `expiresAt` (seconds since the epoch) ends
   * the client id itself: an upstream client whose secret expires takes the
   * gateway client with it, and the client registers again.
   */
  register(metadata: Omit<RegisteredClient, 'client_id' | 'client_id_issued_at' | 'application_type'> & { application_type?: ApplicationType | undefined }, expiresAt?: number): { client: RegisteredClient; clientSecret?: string } | undefined {
    const now = nowSeconds()
    const { upstream } = metadata
    const sealed: SealedClient = {
      r: metadata.redirect_uris,
      m: metadata.token_endpoint_auth_method,
      g: metadata.grant_types,
      n: metadata.client_name,
      s: metadata.scope,
      a: metadata.application_type,
      t: now,
      j: randomUUID().slice(0, 8),
      u: upstream && { i: upstream.clientId, s: upstream.clientSecret, m: upstream.authMethod },
    }
    const clientId = this.#sealer.seal('client', sealed, expiresAt === undefined ? undefined : Math.max(1, expiresAt - now))
    if (clientId.length > MAX_CLIENT_ID_LENGTH) return undefined
    const client = toClient(clientId, sealed)
    return client.token_endpoint_auth_method === 'none' ? { client } : { client, clientSecret: this.#secretFor(clientId) }
  }

  /** A registered client, or the client a metadata document URL describes (fetched, or from the cache). */
  async find(clientId: string): Promise<ClientLookup> {
    if (isClientIdUrl(clientId)) return this.#fromDocument(clientId)
    const sealed = this.#sealer.open<SealedClient>('client', clientId)
    if (sealed && Array.isArray(sealed.r)) return { ok: true, client: toClient(clientId, sealed) }
    return { ok: false, reason: 'This app is not registered with the gateway (unknown client_id).' }
  }

  /**
   * The redirect URIs a registered client id seals, read without any fetch
   * (rate limits count clients by their family before the endpoint runs);
   * undefined for a metadata document URL or an id the gateway did not issue.
   */
  registeredRedirectUris(clientId: string): string[] | undefined {
    if (isClientIdUrl(clientId)) return undefined
    const sealed = this.#sealer.open<SealedClient>('client', clientId)
    return sealed && Array.isArray(sealed.r) ? sealed.r : undefined
  }

  /** The public keys of a private_key_jwt client; `refresh` bypasses the cache once a key is missing. */
  async keySet(client: RegisteredClient, refresh = false): Promise<{ keys: JSONWebKeySet; fresh: boolean }> {
    if (!this.#documents) throw new ClientMetadataError('cannot be used: client metadata documents are switched off')
    return this.#documents.keySet(client, refresh)
  }

  async #fromDocument(clientId: string): Promise<ClientLookup> {
    const where = `The app's client metadata document at ${clientId.slice(0, 300)}`
    if (!this.#documents) {
      return { ok: false, reason: `${where} cannot be used: this gateway does not accept client metadata documents.`, hint: 'Ask the app to register with the gateway instead, or ask your administrator to enable client metadata documents.' }
    }
    try {
      return { ok: true, client: await this.#documents.resolve(clientId) }
    } catch (err) {
      if (!(err instanceof ClientMetadataError)) throw err
      return { ok: false, reason: `${where} ${err.message}.`, hint: 'The app publishes this document itself: ask its maker to fix it, or try again in a few minutes.' }
    }
  }

  verifySecret(client: RegisteredClient, secret: string): boolean {
    return this.#sealer.verify(`client-secret:${client.client_id}`, secret)
  }

  #secretFor(clientId: string) {
    return this.#sealer.sign(`client-secret:${clientId}`)
  }
}

function toClient(clientId: string, sealed: SealedClient): RegisteredClient {
  return {
    client_id: clientId,
    redirect_uris: sealed.r,
    token_endpoint_auth_method: sealed.m,
    grant_types: sealed.g,
    client_name: sealed.n,
    application_type: sealed.a ?? settleApplicationType(undefined, sealed.r).type,
    scope: sealed.s,
    client_id_issued_at: sealed.t,
    upstream: sealed.u && { clientId: sealed.u.i, clientSecret: sealed.u.s, authMethod: sealed.u.m },
  }
}

/** A short, stable handle for binding codes and refresh tokens to a client without carrying its whole id. */
export function clientHandle(clientId: string): string {
  return createHash('sha256').update(clientId).digest('base64url').slice(0, 22)
}
