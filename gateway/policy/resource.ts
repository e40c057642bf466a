/**
 * RFC 8707 resource indicators: the gateway protects the MCP server
 * (`mcpResource`). What a client may name for it, canonicalised to the
 * configured resource, and what the upstream is sent for it
 * (`upstream.resource`). Pure: no Fastify here.
 *
 * Clients do not all send the configured URL exactly: `new URL()` adds a
 * slash to a bare origin and Claude is reported to add one to any resource;
 * ChatGPT is reported to send the origin root (`https://mcp.example.com/`
 * for `https://mcp.example.com/mcp`). Both are accepted, the origin root
 * while `upstream.acceptOriginRootResource` is on and only while it names
 * one protected resource.
 */
import type { Config } from '../config/schema.ts'
import { invalidTarget } from '../errors.ts'

/** What a `resource` may name. */
export interface AcceptedResources {
  /** The protected resources, as configured (canonical). */
  resources: readonly string[]
  /** Whether the origin root of a resource stands for it. */
  originRoot: boolean
}

/** The gateway protects one resource; the list keeps the origin-root rule honest should it ever protect more. */
export function acceptedResources(config: Pick<Config, 'mcpResource' | 'upstream'>): AcceptedResources {
  return { resources: [config.mcpResource], originRoot: config.upstream.acceptOriginRootResource }
}

/** Scheme and host case and the default port as URL writes them, and no trailing slash: two spellings of one resource compare equal. */
function comparable(value: string): string | undefined {
  if (!URL.canParse(value)) return undefined
  const url = new URL(value)
  if (url.hash || value.includes('#')) return undefined
  return `${url.origin}${url.pathname.replace(/\/$/, '')}${url.search}`
}

const originRootOf = (resource: string) => `${new URL(resource).origin}/`

/**
 * A `resource` a client sent, on authorize or token (RFC 8707 §2), as the
 * configured resource it names; undefined when none was sent. Anything else
 * is invalid_target, saying what is accepted.
 */
export function checkResource(accepted: AcceptedResources, resource: string | undefined): string | undefined {
  if (resource === undefined) return undefined
  const asked = comparable(resource)
  if (asked !== undefined) {
    const exact = accepted.resources.find((candidate) => comparable(candidate) === asked)
    if (exact) return exact
    const rooted = accepted.originRoot ? accepted.resources.filter((candidate) => comparable(originRootOf(candidate)) === asked) : []
    if (rooted.length > 1) {
      throw invalidTarget(`resource: ${resource.slice(0, 200)} is the origin root of several protected resources (${rooted.join(', ')}), so it names none of them; send the resource itself (RFC 8707 §2)`)
    }
    if (rooted.length === 1) return rooted[0]
  }
  throw invalidTarget(`resource: must name the protected MCP server: ${describeAccepted(accepted)} (RFC 8707 §2), not ${resource.slice(0, 200)}`)
}

function describeAccepted(accepted: AcceptedResources): string {
  return accepted.resources
    .map((resource) => {
      const root = originRootOf(resource)
      const slash = resource.endsWith('/') ? '' : ', with or without a trailing slash'
      return accepted.originRoot && root !== resource && comparable(root) !== comparable(resource) ? `${resource}${slash}, or its origin root ${root}` : `${resource}${slash}`
    })
    .join('; ')
}

/** The parameters the upstream gets on authorize, code exchange and refresh in place of the client's `resource`. */
export function upstreamResourceParameters(config: Pick<Config, 'mcpResource' | 'upstream'>): Readonly<Record<string, string>> {
  const setting = config.upstream.resource
  switch (setting.mode) {
    case 'drop':
      return {}
    case 'forward':
      return { resource: config.mcpResource }
    case 'map':
      return { resource: setting.value }
    case 'audience':
      return { audience: setting.value ?? config.mcpResource }
  }
}
