/**
 * Who a grant belongs to: which source tells it with this upstream
 * (upstream.identitySource and the upstream's metadata) and how a set of
 * claims becomes the user (upstream.userClaim). Pure: upstream/index.ts
 * asks the upstream, doctor names the source.
 */
/** Who signed in, as the upstream tells it; grants/grant.ts GrantUser. */
export interface Identity {
  id: string
  name?: string | undefined
  email?: string | undefined
}

/** Where identities come from with this upstream, as `doctor` names it. */
export type IdentitySourceInUse = 'id_token' | 'userinfo' | 'introspection' | 'none'

/** upstream.identitySource, as configured. */
export type IdentitySource = 'auto' | 'id_token' | 'userinfo' | 'introspection' | 'none'

/** The upstream metadata the choice reads (RFC 8414, OpenID Connect Discovery). */
export interface IdentityMetadata {
  id_token_signing_alg_values_supported?: unknown
  userinfo_endpoint?: unknown
  introspection_endpoint?: unknown
}

/**
 * Which source `auto` means with this upstream: the ID token when it sends
 * one (it is OpenID), else userinfo when its metadata names the endpoint.
 * An explicit source is used as configured when the upstream can serve it.
 */
export function identitySourceFor(configured: IdentitySource, metadata: IdentityMetadata, sentIdToken?: boolean): IdentitySourceInUse {
  const openid = sentIdToken ?? (metadata.id_token_signing_alg_values_supported !== undefined || metadata.userinfo_endpoint !== undefined)
  switch (configured) {
    case 'none':
      return 'none'
    case 'id_token':
      return openid ? 'id_token' : 'none'
    case 'userinfo':
      return metadata.userinfo_endpoint ? 'userinfo' : 'none'
    case 'introspection':
      return metadata.introspection_endpoint ? 'introspection' : 'none'
    case 'auto':
      if (sentIdToken ?? metadata.id_token_signing_alg_values_supported !== undefined) return 'id_token'
      return metadata.userinfo_endpoint ? 'userinfo' : 'none'
  }
}

/** The user from a set of claims: `userClaim` as the id (a string or a number), with name and email when present. */
export function identityFrom(claims: Record<string, unknown> | undefined, userClaim: string): Identity | undefined {
  const id = claims?.[userClaim]
  if (!claims || !((typeof id === 'string' && id.length > 0) || typeof id === 'number')) return undefined
  const text = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value.slice(0, 256) : undefined)
  return { id: String(id).slice(0, 512), name: text(claims.name) ?? text(claims.preferred_username), email: text(claims.email) }
}
