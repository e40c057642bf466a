/**
 * A client as the gateway knows it, whether it registered (registry.ts) or
 * publishes a metadata document (metadata-documents.ts): the one shape both
 * produce and every endpoint reads.
 */
import type { JSONWebKeySet } from 'jose'
import type { ApplicationType } from '../policy/application-type.ts'
import type { UpstreamClient } from '../upstream/registration.ts'

/** The methods a client may register with (RFC 7591). */
export const AUTH_METHODS = ['none', 'client_secret_basic', 'client_secret_post'] as const
/** Every method the token endpoint accepts: metadata-document clients may also use private_key_jwt (RFC 7523). */
export const TOKEN_AUTH_METHODS = [...AUTH_METHODS, 'private_key_jwt'] as const
export type AuthMethod = (typeof TOKEN_AUTH_METHODS)[number]
export const GRANT_TYPES = ['authorization_code', 'refresh_token'] as const

export interface RegisteredClient {
  client_id: string
  redirect_uris: string[]
  token_endpoint_auth_method: AuthMethod
  grant_types: string[]
  client_name?: string | undefined
  /** `web` or `native` (SEP-837), as settled from the client's label and redirect URIs (policy/application-type.ts). */
  application_type: ApplicationType
  scope?: string | undefined
  client_id_issued_at: number
  /** The client published its metadata at its client id (a URL) instead of registering. */
  metadata_document?: true
  /** Every method the token endpoint accepts from it (a metadata document's, SEP-3149); absent: token_endpoint_auth_method alone. */
  accepted_auth_methods?: AuthMethod[] | undefined
  /** private_key_jwt keys, inline or by URL, from the metadata document. */
  jwks?: JSONWebKeySet | undefined
  jwks_uri?: string | undefined
  /** The client registered for it at the upstream (registration passthrough); absent: the gateway's own upstream client. */
  upstream?: UpstreamClient | undefined
}
