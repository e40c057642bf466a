/**
 * `application_type` (OpenID Connect Dynamic Registration §2; MCP SEP-837):
 * `native` for an app on the user's device, `web` for a website. Clients
 * send it, or not, and real ones mislabel it (Cursor sends `web` with
 * `cursor://…`), so the gateway settles it from the redirect URIs: a client
 * whose every redirect URI is loopback or a custom scheme is native whatever
 * it said, and one that says nothing gets what its redirect URIs show. A
 * `native` label on https redirect URIs stands (an app may claim an https
 * address, RFC 8252 §7.2); plain http off loopback never passes the redirect
 * URI rules at all. Pure: no Fastify here.
 */
import { isLoopbackHost } from './redirect-uri.ts'

export const APPLICATION_TYPES = ['web', 'native'] as const
export type ApplicationType = (typeof APPLICATION_TYPES)[number]

/** RFC 8252 §7.1 (a private-use scheme) and §7.3 (loopback): addresses only an app on the device can receive. */
export function isDeviceRedirect(uri: string): boolean {
  if (!URL.canParse(uri)) return false
  const url = new URL(uri)
  if (url.protocol === 'https:') return false
  if (url.protocol === 'http:') return isLoopbackHost(url.hostname)
  return true
}

export interface SettledApplicationType {
  type: ApplicationType
  /** The label the client sent, when the gateway answers another. */
  corrected?: ApplicationType | undefined
}

/** The client's application type, from its label and its (already checked) redirect URIs. */
export function settleApplicationType(label: ApplicationType | undefined, redirectUris: readonly string[]): SettledApplicationType {
  const device = redirectUris.length > 0 && redirectUris.every(isDeviceRedirect)
  if (label === undefined) return { type: device ? 'native' : 'web' }
  if (label === 'web' && device) return { type: 'native', corrected: 'web' }
  return { type: label }
}
