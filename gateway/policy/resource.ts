/**
 * RFC 8707 resource indicators: the gateway protects one resource, the MCP
 * server (`mcpResource`). What a client may name, and what the upstream is
 * sent for it (`upstream.resource`). Pure: no Fastify here.
 */
import type { Config } from '../config/schema.ts'
import { invalidTarget } from '../errors.ts'

const withoutTrailingSlash = (value: string) => value.replace(/\/$/, '')

/**
 * A `resource` a client sent, on authorize or token: it must name the MCP
 * server. A trailing slash is tolerated (`new URL()` adds one to a bare origin).
 */
export function checkResource(config: Pick<Config, 'mcpResource'>, resource: string | undefined): string | undefined {
  if (resource === undefined) return undefined
  if (withoutTrailingSlash(resource) !== withoutTrailingSlash(config.mcpResource)) {
    throw invalidTarget(`resource: must name the protected MCP server ${config.mcpResource} (RFC 8707 §2), not ${resource.slice(0, 200)}`)
  }
  return config.mcpResource
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
