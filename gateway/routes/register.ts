/**
 * Dynamic client registration (RFC 7591). Redirect URIs must pass the ops
 * allowlist here and again at /authorize; unknown metadata is ignored
 * (RFC 7591 §2), and the answer names exactly what was registered. In
 * registration passthrough (`registration.mode: upstream`) the client is
 * registered at the upstream too, only once every check here has passed.
 */
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { AUTH_METHODS, GRANT_TYPES, type RegisteredClient } from '../clients/client.ts'
import { clientHandle } from '../clients/registry.ts'
import { invalidClientMetadata, invalidRedirectUri } from '../errors.ts'
import { logStep } from '../http/log.ts'
import { presetOf, refusalReason } from '../policy/presets.ts'
import { normaliseRedirectUri } from '../policy/redirect-uri.ts'
import { scopeNames } from '../policy/scopes.ts'
import type { Gateway } from '../context.ts'

function registrationSchema(gateway: Gateway) {
  const { config } = gateway
  return z.looseObject({
    redirect_uris: z.array(z.string()).min(1).max(config.registration.maxRedirectUris),
    // RFC 7591 §2: client_secret_basic when omitted.
    token_endpoint_auth_method: z.enum(AUTH_METHODS).default('client_secret_basic'),
    // Both by default: MCP clients expect to refresh, and the answer says so.
    grant_types: z.array(z.enum(GRANT_TYPES)).min(1).default([...GRANT_TYPES]),
    response_types: z.array(z.literal('code')).min(1).default(['code']),
    client_name: z.string().max(200).optional(),
    scope: z
      .string()
      .max(1000)
      .refine((scope) => scopeNames(scope).every((s) => config.scopes.supported.includes(s)), `asks for a scope that is not supported (supported: ${config.scopes.supported.join(' ')})`)
      .optional(),
  })
}

export async function register(app: FastifyInstance) {
  const gateway = app.gateway
  const schema = registrationSchema(gateway)

  app.post('/register', { bodyLimit: gateway.config.server.bodyLimits.register, config: { limits: 'register' } }, async (request, reply) => {
    const metadata = parseMetadata(schema, request.body)
    const redirectUris = checkRedirectUris(gateway, metadata.redirect_uris)
    if (!metadata.grant_types.includes('authorization_code')) throw invalidClientMetadata('grant_types: must include authorization_code (the only flow this gateway serves)')

    const upstream = gateway.config.registration.mode === 'upstream'
      ? await gateway.upstream.registerClient({ client_name: metadata.client_name, grant_types: metadata.grant_types })
      : undefined
    const registered = gateway.clients.register({
      redirect_uris: redirectUris,
      token_endpoint_auth_method: metadata.token_endpoint_auth_method,
      grant_types: metadata.grant_types,
      client_name: metadata.client_name,
      scope: metadata.scope?.trim() || undefined,
      upstream,
    }, upstream?.expiresAt)
    if (!registered) throw invalidClientMetadata('redirect_uris: the registration is too large for a client id; use fewer or shorter redirect URIs')
    const { client, clientSecret } = registered
    request.oauthClient = { name: client.client_name, handle: clientHandle(client.client_id) }
    // The client list (grants/registry.ts) names every client that registered, from its first_seen on.
    await gateway.grants.recordClient(client)
    const preset = presetOf(client.redirect_uris[0]!)
    gateway.metrics.clientRegistered(preset)
    logStep(request, 'register', 'registered', 'client registered', { preset, auth_method: client.token_endpoint_auth_method, mode: gateway.config.registration.mode })

    return reply.code(201).header('cache-control', 'no-store').send(registrationResponse(client, clientSecret, upstream?.expiresAt))
  })
}

/** RFC 7591 §3.2.1: what was registered, and never the upstream client sealed inside the id. */
function registrationResponse(client: RegisteredClient, clientSecret: string | undefined, expiresAt: number | undefined) {
  return {
    client_id: client.client_id,
    client_id_issued_at: client.client_id_issued_at,
    redirect_uris: client.redirect_uris,
    token_endpoint_auth_method: client.token_endpoint_auth_method,
    grant_types: client.grant_types,
    response_types: ['code'],
    ...(client.client_name === undefined ? {} : { client_name: client.client_name }),
    ...(client.scope === undefined ? {} : { scope: client.scope }),
    ...(clientSecret ? { client_secret: clientSecret, client_secret_expires_at: expiresAt ?? 0 } : {}),
  }
}

function parseMetadata(schema: ReturnType<typeof registrationSchema>, body: unknown) {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalidClientMetadata('the body must be a JSON object of client metadata (RFC 7591 §2)')
  const result = schema.safeParse(body)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const field = issue.path.join('.') || 'metadata'
  if (field.startsWith('redirect_uris')) throw invalidRedirectUri(`${field}: ${issue.message}`)
  throw invalidClientMetadata(`${field}: ${issue.message}`)
}

function checkRedirectUris(gateway: Gateway, uris: string[]): string[] {
  return uris.map((uri, i) => {
    const checked = normaliseRedirectUri(uri)
    if (!checked.ok) throw invalidRedirectUri(`redirect_uris[${i}] ${checked.reason}`)
    if (!gateway.allowlist.allows(checked.url)) {
      gateway.metrics.redirectUriRefused('register', presetOf(checked.uri))
      throw invalidRedirectUri(`redirect_uris[${i}] is not allowed by this gateway: ${checked.uri} (${refusalReason(checked.url, gateway.config.redirectPresets)})`)
    }
    return checked.uri
  })
}
