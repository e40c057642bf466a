/**
 * Registered clients (RFC 7591). A client id is the client's registration,
 * sealed with GATEWAY_SECRET: any replica that shares the secret knows every
 * client, and a restart loses none. A confidential client's secret is a MAC
 * of its id, so nothing about a client is stored anywhere. In registration
 * passthrough the id also seals the client's own upstream client, id and
 * secret, which only the gateway can read.
 */
import { createHash, randomUUID } from 'node:crypto'
import type { Sealer } from './seal.ts'
import { nowSeconds } from './seal.ts'
import type { UpstreamClient } from './upstream/registration.ts'

export const AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post'] as const
export type AuthMethod = (typeof AUTH_METHODS)[number]
export const GRANT_TYPES = ['authorization_code', 'refresh_token'] as const

export interface RegisteredClient {
  client_id: string
  redirect_uris: string[]
  token_endpoint_auth_method: AuthMethod
  grant_types: string[]
  client_name?: string | undefined
  scope?: string | undefined
  client_id_issued_at: number
  /** The client registered for it at the upstream (registration passthrough); absent: the gateway's own upstream client. */
  upstream?: UpstreamClient | undefined
}

/** What the sealed client id holds; short keys keep the id short. */
interface SealedClient {
  r: string[]
  m: AuthMethod
  g: string[]
  n?: string | undefined
  s?: string | undefined
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

  constructor(sealer: Sealer) {
    this.#sealer = sealer
  }

  /**
   * Returns the registered client and, for a confidential one, its secret;
   * undefined when it is too large. `expiresAt` (seconds since the epoch) ends
   * the client id itself: an upstream client whose secret expires takes the
   * gateway client with it, and the client registers again.
   */
  register(metadata: Omit<RegisteredClient, 'client_id' | 'client_id_issued_at'>, expiresAt?: number): { client: RegisteredClient; clientSecret?: string } | undefined {
    const now = nowSeconds()
    const { upstream } = metadata
    const sealed: SealedClient = {
      r: metadata.redirect_uris,
      m: metadata.token_endpoint_auth_method,
      g: metadata.grant_types,
      n: metadata.client_name,
      s: metadata.scope,
      t: now,
      j: randomUUID().slice(0, 8),
      u: upstream && { i: upstream.clientId, s: upstream.clientSecret, m: upstream.authMethod },
    }
    const clientId = this.#sealer.seal('client', sealed, expiresAt === undefined ? undefined : Math.max(1, expiresAt - now))
    if (clientId.length > MAX_CLIENT_ID_LENGTH) return undefined
    const client = toClient(clientId, sealed)
    return client.token_endpoint_auth_method === 'none' ? { client } : { client, clientSecret: this.#secretFor(clientId) }
  }

  find(clientId: unknown): RegisteredClient | undefined {
    const sealed = this.#sealer.open<SealedClient>('client', clientId)
    return sealed && Array.isArray(sealed.r) ? toClient(clientId as string, sealed) : undefined
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
    scope: sealed.s,
    client_id_issued_at: sealed.t,
    upstream: sealed.u && { clientId: sealed.u.i, clientSecret: sealed.u.s, authMethod: sealed.u.m },
  }
}

/** A short, stable handle for binding codes and refresh tokens to a client without carrying its whole id. */
export function clientHandle(clientId: string): string {
  return createHash('sha256').update(clientId).digest('base64url').slice(0, 22)
}
