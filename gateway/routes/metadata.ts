/**
 * Authorization server metadata (RFC 8414), served at every well-known path
 * MCP clients try, including the path-suffixed variants
 * (`/.well-known/oauth-authorization-server/mcp`). The same document answers
 * `openid-configuration`: the gateway is an OAuth server, not an OpenID
 * Provider, so it names no jwks_uri or userinfo endpoint and returns no ID token.
 */
import type { FastifyInstance } from 'fastify'
import { ASSERTION_ALGORITHMS } from '../clients/authentication.ts'
import { AUTH_METHODS, GRANT_TYPES, TOKEN_AUTH_METHODS } from '../clients/client.ts'

const WELL_KNOWN = ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']

export async function metadata(app: FastifyInstance) {
  const { config, endpoints } = app.gateway
  // private_key_jwt is open to clients with a metadata document only (they publish their keys there).
  const documents = config.clientMetadataDocuments.enabled
  const authMethods = documents ? TOKEN_AUTH_METHODS : AUTH_METHODS
  const document = Object.freeze({
    issuer: config.publicUrl,
    authorization_endpoint: endpoints.authorization,
    token_endpoint: endpoints.token,
    registration_endpoint: endpoints.registration,
    revocation_endpoint: endpoints.revocation,
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: GRANT_TYPES,
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: authMethods,
    revocation_endpoint_auth_methods_supported: authMethods,
    // RFC 8414 §2: required once private_key_jwt is listed.
    ...(documents
      ? {
          token_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
          revocation_endpoint_auth_signing_alg_values_supported: ASSERTION_ALGORITHMS,
        }
      : {}),
    scopes_supported: config.scopes.supported,
    authorization_response_iss_parameter_supported: true,
    // MCP authorization 2025-11-25: clients may use an https URL of their metadata as client_id.
    client_id_metadata_document_supported: documents,
  })
  const body = JSON.stringify(document)

  for (const path of WELL_KNOWN) {
    for (const url of [path, `${path}/*`]) {
      app.get(url, { config: { log: 'quiet', parameters: false } }, async (_request, reply) =>
        reply.header('cache-control', 'public, max-age=300').type('application/json; charset=utf-8').send(body),
      )
    }
  }
}
