/**
 * The doctor's checks, in the order a connector meets the deployment: the
 * upstream, the gateway's metadata and CORS, the way from the MCP URL to the
 * gateway, the redirect URIs, and one scripted connector flow up to the
 * upstream's sign-in page. Pure of printing and exit codes: it returns one
 * result per check (doctor/main.ts prints them).
 */
import type { Settings } from '../config/schema.ts'
import { checkConnectorFlow, checkRedirectUris, redirectCandidates } from './flow.ts'
import { checkGatewayMetadata, checkGatewayResourceMetadata, checkMcpDiscovery, checkPreflight } from './gateway.ts'
import { requester } from './http.ts'
import { Report, type CheckResult } from './report.ts'
import { checkGrantIdentity, checkUpstreamDiscovery, checkUpstreamEndpoints, checkUpstreamPkce } from './upstream.ts'

export type { CheckResult, Status } from './report.ts'

export interface DoctorOptions {
  /** The deployment as configured: what the gateway reads (config/load.ts), without secrets. */
  settings: Settings
  /** Redirect URIs of particular clients, checked beyond the presets and allowedRedirectUris. */
  redirectUris?: readonly string[] | undefined
  /** Deadline of each request, in milliseconds. */
  timeoutMs: number
  /** Called with each result as soon as it is known. */
  onResult?: ((result: CheckResult) => void) | undefined
}

export async function runChecks(options: DoctorOptions): Promise<CheckResult[]> {
  const { settings, timeoutMs } = options
  const report = new Report(options.onResult)
  const http = requester(timeoutMs)

  const upstream = await checkUpstreamDiscovery(report, http, settings.upstream)
  if (upstream) {
    checkUpstreamPkce(report, upstream)
    checkGrantIdentity(report, upstream, settings.upstream)
    await checkUpstreamEndpoints(report, http, upstream, settings.registration.mode)
  }

  const metadata = await checkGatewayMetadata(report, http, settings)
  if (!metadata) {
    report.skip('gateway', 'the remaining gateway checks need its metadata')
    return report.results
  }
  // Where clients go: the metadata's endpoints, or, where it names none (reported above), the gateway's paths.
  const endpoint = (key: string, path: string) => (typeof metadata[key] === 'string' && URL.canParse(metadata[key]) ? metadata[key] : `${settings.publicUrl}${path}`)
  const registration = endpoint('registration_endpoint', '/register')
  await checkPreflight(report, http, 'gateway CORS preflight /token', endpoint('token_endpoint', '/token'), ['authorization', 'content-type'])
  await checkPreflight(report, http, 'gateway CORS preflight /register', registration, ['content-type'])
  if (settings.front.enabled) {
    await checkPreflight(report, http, 'gateway CORS preflight MCP', settings.mcpResource, ['authorization', 'content-type', 'mcp-protocol-version'])
  }
  await checkGatewayResourceMetadata(report, http, settings)
  await checkMcpDiscovery(report, http, settings)

  const accepted = await checkRedirectUris(report, http, registration, redirectCandidates(settings, options.redirectUris ?? []))
  // The connector's redirect URI: one asked for on the command line, else ChatGPT's, else any accepted one.
  const redirectUri = accepted.find((uri) => options.redirectUris?.includes(uri)) ?? accepted.find((uri) => uri.startsWith('https://chatgpt.com/')) ?? accepted[0]
  if (!redirectUri) {
    report.skip('connector flow', 'no redirect URI was accepted above')
    return report.results
  }
  await checkConnectorFlow(report, { settings, endpoints: { registration, authorization: endpoint('authorization_endpoint', '/authorize') }, upstream, redirectUri, timeoutMs })
  return report.results
}
