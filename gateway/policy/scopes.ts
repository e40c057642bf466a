/**
 * Scope policy: what a client may ask for, what the upstream is asked for
 * (renamed per `scopes.upstream`, with `offline_access` added when
 * configured), and what the client is told it was granted. Pure: no Fastify here.
 */
import type { Config } from '../config/schema.ts'
import { invalidScope } from '../errors.ts'

type ScopeConfig = Config['scopes']

/** A scope string's names, in order (RFC 6749 §3.3: space-delimited); none for an absent or empty one. */
export function scopeNames(scope: string | undefined): string[] {
  return (scope ?? '').split(' ').filter(Boolean)
}

/** A scope's names, each once and sorted: two scopes naming the same set, in any order, compare equal. */
export function canonicalScope(scope: string): string {
  return [...new Set(scopeNames(scope))].sort().join(' ')
}

/**
 * RFC 6749 §3.3: the client's scope in its own names. An absent or empty
 * `scope` (ChatGPT sends `scope=`) means the configured default scopes.
 */
export function resolveClientScope(scopes: ScopeConfig, requested: string | undefined): string {
  const asked = scopeNames(requested)
  if (asked.length === 0) return scopes.default.join(' ')
  const unknown = asked.filter((scope) => !scopes.supported.includes(scope))
  if (unknown.length) throw invalidScope(`scope: ${unknown.join(' ')} ${unknown.length > 1 ? 'are' : 'is'} not supported (supported: ${scopes.supported.join(' ')})`)
  return [...new Set(asked)].join(' ')
}

/** The scope asked of the upstream for a client scope. */
export function upstreamScope(scopes: ScopeConfig, clientScope: string, options: { refreshTokens: boolean }): string {
  const upstream = scopeNames(clientScope).flatMap((scope) => scopeNames(Object.hasOwn(scopes.upstream, scope) ? scopes.upstream[scope] : scope))
  if (scopes.addOfflineAccess && options.refreshTokens) upstream.push('offline_access')
  return [...new Set(upstream)].join(' ')
}

/**
 * RFC 6749 §5.1 `scope` in the client's names: each scope the client asked
 * for whose upstream scopes were all granted. Without renaming, the
 * upstream's answer is passed on as it is.
 */
export function grantedClientScope(scopes: ScopeConfig, clientScope: string, upstreamGranted: string | undefined): string | undefined {
  if (upstreamGranted === undefined) return undefined
  if (Object.keys(scopes.upstream).length === 0 && !scopes.addOfflineAccess) return upstreamGranted
  const granted = new Set(scopeNames(upstreamGranted))
  const upstreamOf = (scope: string) => scopeNames(Object.hasOwn(scopes.upstream, scope) ? scopes.upstream[scope] : scope)
  return scopeNames(clientScope)
    .filter((scope) => upstreamOf(scope).every((name) => granted.has(name)))
    .join(' ')
}
