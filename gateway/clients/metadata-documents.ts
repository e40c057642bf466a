/**
 * Client ID Metadata Documents (MCP authorization 2025-11-25;
 * draft-ietf-oauth-client-id-metadata-document): a client id that is an https
 * URL names a JSON document of the client's metadata, fetched by the gateway
 * (through upstream/document-fetcher.ts) and cached in the shared store, so
 * every replica sees the same client.
 */
import { createHash } from 'node:crypto'
import type { JSONWebKeySet } from 'jose'
import { z } from 'zod'
import { checkFetchableUrl } from '../policy/addresses.ts'
import { APPLICATION_TYPES, settleApplicationType } from '../policy/application-type.ts'
import { GRANT_TYPES, type RegisteredClient } from './client.ts'
import type { Config } from '../config/schema.ts'
import { normaliseRedirectUri } from '../policy/redirect-uri.ts'
import type { Store } from '../state/store.ts'
import { FetchRefused, type ClientMetadataFetcher, type FetchedJson } from '../upstream/document-fetcher.ts'

/** The draft: no method based on a shared secret, since none can be shared. */
export const DOCUMENT_AUTH_METHODS = ['none', 'private_key_jwt'] as const
type DocumentAuthMethod = (typeof DOCUMENT_AUTH_METHODS)[number]

/** Private JWK members; a document must publish public keys only. */
const PRIVATE_KEY_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']
const MAX_CLIENT_ID_URL = 2048

/** Why a document cannot be used; the message completes "The app's client metadata document at <url> …". */
export class ClientMetadataError extends Error {
  override name = 'ClientMetadataError'
}

/** Client ids the gateway issues are sealed strings and never contain "://", so any URL-shaped id is a document. */
export function isClientIdUrl(clientId: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(clientId)
}

/**
 * The draft's rules for a Client Identifier URL: https, a path, no userinfo,
 * no fragment, no dot segments. Requiring the URL's canonical form makes the
 * later "client_id equals the URL" a plain string comparison that cannot be
 * fooled by two spellings of one URL.
 */
export function checkClientIdUrl(clientId: string, allowLoopback: boolean): URL {
  if (clientId.length > MAX_CLIENT_ID_URL) throw new ClientMetadataError(`is longer than ${MAX_CLIENT_ID_URL} characters`)
  const checked = checkFetchableUrl(clientId, { allowLoopback })
  if (!checked.ok) throw new ClientMetadataError(checked.reason)
  const { url } = checked
  if (clientId.includes('#')) throw new ClientMetadataError('must not have a fragment')
  if (url.pathname === '/') throw new ClientMetadataError('must have a path')
  if (url.href !== clientId) throw new ClientMetadataError('must be written in canonical form (lower-case host, no default port, no dot segments)')
  return url
}

const jwk = z.looseObject({ kty: z.string() })

const documentSchema = z.looseObject({
  client_id: z.string(),
  redirect_uris: z.array(z.string()).min(1).max(20),
  token_endpoint_auth_method: z.string().max(100).optional(),
  // SEP-3149 names the list token_endpoint_auth_methods_supported (as OpenID Connect RP Metadata Choices does); token_endpoint_auth_methods is read too.
  token_endpoint_auth_methods_supported: z.array(z.string().max(100)).min(1).max(20).optional(),
  token_endpoint_auth_methods: z.array(z.string().max(100)).min(1).max(20).optional(),
  grant_types: z.array(z.string()).default([...GRANT_TYPES]),
  response_types: z.array(z.string()).optional(),
  client_name: z.string().max(200).optional(),
  application_type: z.enum(APPLICATION_TYPES).optional(),
  scope: z.string().max(1000).optional(),
  jwks: z.strictObject({ keys: z.array(jwk).min(1).max(20) }).optional(),
  jwks_uri: z.string().optional(),
})

/** Validates a fetched document against the URL it was fetched from; throws ClientMetadataError. */
export function parseDocument(clientId: string, json: unknown, allowLoopback: boolean): RegisteredClient {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ClientMetadataError('is not a JSON object')
  const parsed = documentSchema.safeParse(json)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ClientMetadataError(`has an invalid ${issue.path.join('.') || 'value'}: ${issue.message}`)
  }
  const document = parsed.data
  if (document.client_id !== clientId) throw new ClientMetadataError(`names another client_id (${document.client_id.slice(0, 200)}) than the URL it was fetched from`)
  if ('client_secret' in document || 'client_secret_expires_at' in document) throw new ClientMetadataError('must not contain a client_secret')

  const { method, accepted } = resolveAuthMethods(document)
  for (const key of document.jwks?.keys ?? []) {
    if (PRIVATE_KEY_MEMBERS.some((member) => member in key)) throw new ClientMetadataError('publishes private or symmetric key material in jwks')
  }
  if (document.jwks_uri !== undefined) {
    const checked = checkFetchableUrl(document.jwks_uri, { allowLoopback })
    if (!checked.ok) throw new ClientMetadataError(`has a jwks_uri that ${checked.reason}`)
  }
  if (method === 'private_key_jwt' && (document.jwks === undefined) === (document.jwks_uri === undefined)) {
    throw new ClientMetadataError('uses private_key_jwt and must publish its keys in exactly one of jwks and jwks_uri')
  }
  if (!document.grant_types.includes('authorization_code')) throw new ClientMetadataError('must allow the authorization_code grant')
  if (document.response_types && !document.response_types.includes('code')) throw new ClientMetadataError('must allow response_type code')

  const redirectUris = document.redirect_uris.map((uri, i) => {
    const checked = normaliseRedirectUri(uri)
    if (!checked.ok) throw new ClientMetadataError(`has a redirect_uris[${i}] that ${checked.reason}`)
    return checked.uri
  })
  return {
    client_id: clientId,
    redirect_uris: redirectUris,
    token_endpoint_auth_method: method,
    accepted_auth_methods: accepted,
    grant_types: document.grant_types.filter((grant) => (GRANT_TYPES as readonly string[]).includes(grant)),
    client_name: document.client_name,
    application_type: settleApplicationType(document.application_type, redirectUris).type,
    scope: document.scope,
    client_id_issued_at: 0,
    metadata_document: true,
    jwks: method === 'private_key_jwt' ? (document.jwks as JSONWebKeySet | undefined) : undefined,
    jwks_uri: method === 'private_key_jwt' ? document.jwks_uri : undefined,
  }
}

/**
 * The methods the client may authenticate with at the token and revocation
 * endpoints (SEP-3149, "Method Resolution"): the document's list (or its
 * single `token_endpoint_auth_method`, the deprecated form; neither means
 * `none`) intersected with the methods a document may use here, and
 * `private_key_jwt` only with keys. The client picks from them, so each is
 * accepted; `method` is the one the gateway records and shows, an
 * authenticated one before `none`. Nothing in common is refused, saying what
 * the gateway supports.
 */
export function resolveAuthMethods(document: {
  token_endpoint_auth_method?: string | undefined
  token_endpoint_auth_methods_supported?: string[] | undefined
  token_endpoint_auth_methods?: string[] | undefined
  jwks?: unknown
  jwks_uri?: string | undefined
}): { method: DocumentAuthMethod; accepted: DocumentAuthMethod[] } {
  const single = document.token_endpoint_auth_method
  const { token_endpoint_auth_methods_supported: supported, token_endpoint_auth_methods: listed } = document
  if (supported && listed && [...new Set(supported)].sort().join(' ') !== [...new Set(listed)].sort().join(' ')) {
    throw new ClientMetadataError('names two different lists in token_endpoint_auth_methods_supported and token_endpoint_auth_methods')
  }
  const list = supported ?? listed
  const field = supported ? 'token_endpoint_auth_methods_supported' : 'token_endpoint_auth_methods'
  if (list && single !== undefined && !list.includes(single)) {
    throw new ClientMetadataError(`prefers token_endpoint_auth_method ${single.slice(0, 50)}, which is not in its ${field} (SEP-3149)`)
  }
  const offered = list ?? [single ?? 'none']
  const common = DOCUMENT_AUTH_METHODS.filter((method) => offered.includes(method))
  if (!common.length) {
    if (!list) throw new ClientMetadataError(`asks for token_endpoint_auth_method ${offered[0]!.slice(0, 50)}; a metadata document can only use none or private_key_jwt`)
    throw new ClientMetadataError(`offers ${field} ${offered.map((method) => method.slice(0, 50)).join(', ')}, none of which this gateway accepts from a metadata document (only none and private_key_jwt)`)
  }
  const hasKeys = document.jwks !== undefined || document.jwks_uri !== undefined
  // Without keys, private_key_jwt is left out when none remains; alone, it is refused below for want of keys.
  const accepted = hasKeys || !common.includes('none') ? common : ['none' as const]
  return { method: accepted.includes('private_key_jwt') ? 'private_key_jwt' : 'none', accepted }
}

/**
 * How long a fetched document may be cached (RFC 9111 §5.2.2, §5.3): no-store
 * and no-cache mean not at all; max-age, else Expires, else the default; never
 * longer than the configured bound.
 */
export function cacheLifetime(fetched: Pick<FetchedJson, 'cacheControl' | 'expires' | 'date'>, settings: { defaultCacheSeconds: number; maxCacheSeconds: number }, now = Date.now()): number {
  const directives = (fetched.cacheControl ?? '').toLowerCase().split(',').map((directive) => directive.trim())
  if (directives.some((directive) => directive === 'no-store' || directive === 'no-cache' || directive.startsWith('no-cache='))) return 0
  const maxAge = directives.find((directive) => /^max-age=\d+$/.test(directive))
  let seconds = settings.defaultCacheSeconds
  if (maxAge) seconds = Number(maxAge.slice('max-age='.length))
  else if (fetched.expires !== undefined) {
    const expires = Date.parse(fetched.expires)
    const date = fetched.date !== undefined ? Date.parse(fetched.date) : now
    // An invalid Expires means "already expired" (RFC 9111 §5.3).
    seconds = Number.isNaN(expires) ? 0 : Math.floor((expires - (Number.isNaN(date) ? now : date)) / 1000)
  }
  return Math.max(0, Math.min(seconds, settings.maxCacheSeconds))
}

type Settings = Config['clientMetadataDocuments']

/** Which document a fetch is for: a client's metadata document or the key set its jwks_uri names. */
export type FetchedDocument = 'metadata' | 'jwks'
export type FetchObserver = (document: FetchedDocument, outcome: 'ok' | 'failed' | 'invalid') => void

/**
 * Resolves document URLs to clients and key-set URLs to keys, through a cache
 * in the shared store. Only valid documents are cached (the draft forbids
 * caching errors), and one replica never holds more than
 * `maxCachedDocuments` entries in the store, so a flood of distinct URLs
 * cannot fill it.
 */
export class ClientMetadataDocuments {
  readonly #fetcher: ClientMetadataFetcher
  readonly #store: Store
  readonly #settings: Settings
  /** Cache keys this replica wrote, with their expiry: the bound on what it puts into the store. */
  readonly #written = new Map<string, number>()
  /** One fetch per URL at a time on this replica. */
  readonly #inflight = new Map<string, Promise<{ json: unknown; fresh: boolean }>>()

  readonly #observe: FetchObserver

  /** `observe` hears of every fetch (not the cache hits), for the metric. */
  constructor(fetcher: ClientMetadataFetcher, store: Store, settings: Settings, observe: FetchObserver = () => {}) {
    this.#fetcher = fetcher
    this.#store = store
    this.#settings = settings
    this.#observe = observe
  }

  /** The client a document URL names; throws ClientMetadataError. */
  async resolve(clientId: string): Promise<RegisteredClient> {
    const allowLoopback = this.#settings.developmentAllowLoopback
    checkClientIdUrl(clientId, allowLoopback)
    const { json } = await this.#cachedFetch('metadata', clientId, this.#settings.maxBytes, (value) => parseDocument(clientId, value, allowLoopback))
    return parseDocument(clientId, json, allowLoopback)
  }

  /**
   * The client's public keys: inline `jwks`, or `jwks_uri` fetched through the
   * same guarded fetcher. `refresh` skips the cache (a key the cached set lacks
   * may be a rotation).
   */
  async keySet(client: RegisteredClient, refresh = false): Promise<{ keys: JSONWebKeySet; fresh: boolean }> {
    if (client.jwks) return { keys: client.jwks, fresh: true }
    if (!client.jwks_uri) throw new ClientMetadataError('publishes no keys')
    const { json, fresh } = await this.#cachedFetch('jwks', client.jwks_uri, this.#settings.jwksMaxBytes, parseKeySet, refresh)
    return { keys: parseKeySet(json), fresh }
  }

  async #cachedFetch(kind: FetchedDocument, url: string, maxBytes: number, validate: (json: unknown) => unknown, refresh = false): Promise<{ json: unknown; fresh: boolean }> {
    // The cache key keeps its old name for documents, so entries cached before still count.
    const key = `cimd:${kind === 'metadata' ? 'document' : kind}:${createHash('sha256').update(url).digest('base64url')}`
    if (!refresh) {
      const cached = await this.#store.get(key).catch(() => undefined)
      if (cached !== undefined) {
        try {
          const json = JSON.parse(cached) as unknown
          validate(json)
          return { json, fresh: false }
        } catch {
          // A cached entry that no longer validates (the rules changed) is fetched again.
        }
      }
    }
    const running = this.#inflight.get(key)
    if (running) return running
    const work = this.#fetchAndCache(kind, key, url, maxBytes, validate).finally(() => this.#inflight.delete(key))
    this.#inflight.set(key, work)
    return work
  }

  async #fetchAndCache(kind: FetchedDocument, key: string, url: string, maxBytes: number, validate: (json: unknown) => unknown): Promise<{ json: unknown; fresh: boolean }> {
    let fetched: FetchedJson
    try {
      fetched = await this.#fetcher.fetchJson(url, maxBytes)
    } catch (err) {
      this.#observe(kind, 'failed')
      if (err instanceof FetchRefused) throw new ClientMetadataError(err.message, { cause: err })
      throw err
    }
    try {
      validate(fetched.json)
    } catch (err) {
      this.#observe(kind, 'invalid')
      throw err
    }
    this.#observe(kind, 'ok')
    const seconds = cacheLifetime(fetched, this.#settings)
    if (seconds > 0 && this.#mayWrite(key, seconds)) {
      await this.#store.set(key, JSON.stringify(fetched.json), seconds).catch(() => undefined)
    }
    return { json: fetched.json, fresh: true }
  }

  #mayWrite(key: string, seconds: number): boolean {
    const now = Date.now()
    for (const [written, expiresAt] of this.#written) if (expiresAt <= now) this.#written.delete(written)
    if (!this.#written.has(key) && this.#written.size >= this.#settings.maxCachedDocuments) return false
    this.#written.set(key, now + seconds * 1000)
    return true
  }
}

function parseKeySet(json: unknown): JSONWebKeySet {
  const parsed = z.looseObject({ keys: z.array(jwk).min(1).max(50) }).safeParse(json)
  if (!parsed.success) throw new ClientMetadataError('has a jwks_uri that does not serve a JSON Web Key Set')
  for (const key of parsed.data.keys) {
    if (PRIVATE_KEY_MEMBERS.some((member) => member in key)) throw new ClientMetadataError('has a jwks_uri that serves private or symmetric key material')
  }
  return parsed.data as JSONWebKeySet
}
