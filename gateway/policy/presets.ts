/**
 * Named redirect URI presets for the MCP clients the gateway supports. Ops
 * switch each one on or off (`redirectPresets` in the config);
 * `allowedRedirectUris` adds entries of their own. The patterns use the
 * language of redirect-uri.ts: wildcards never cross a `/` or touch a host.
 *
 * Sources: docs/clients.md lists them per vendor. A fact the vendor's own
 * documentation does not state is marked "not confirmed by <vendor>" here,
 * with where it comes from.
 * Pure: no Fastify here.
 */
import { RedirectAllowlist } from './redirect-uri.ts'

export const REDIRECT_PRESETS = {
  /**
   * ChatGPT connectors: `connector/oauth/<id>` (the id changes when a
   * connector is recreated) and `connector_platform_oauth_redirect`, both in
   * OpenAI's Apps SDK authentication docs; the latter is also the one redirect
   * of ChatGPT's metadata document (not confirmed by OpenAI: third-party notes
   * quoting its changelog; it needs RFC 9207 `iss`, which the gateway always
   * sends). GPT Actions on both hosts (OpenAI's GPT Actions docs).
   */
  chatgpt: [
    'https://chatgpt.com/connector/oauth/*',
    'https://chatgpt.com/connector_platform_oauth_redirect',
    'https://chat.openai.com/aip/g-*/oauth/callback',
    'https://chatgpt.com/aip/g-*/oauth/callback',
  ],
  /**
   * Claude on the web, desktop and mobile: the claude.ai callback is in
   * Anthropic's connector docs; the claude.com twin is not confirmed by
   * Anthropic (seen in client registrations, anthropics/claude-ai-mcp issues).
   */
  claude: ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback'],
  /**
   * Native clients listening on loopback (RFC 8252 §7.3): any port, and any
   * path, since whoever holds a loopback port receives every path on it, so a
   * path rule would protect nothing. Claude Code uses `/callback`, VS Code `/`,
   * MCP Inspector `/oauth/callback`; other CLIs use paths of their own.
   */
  loopback: ['http://localhost:*/**', 'http://127.0.0.1:*/**', 'http://[::1]:*/**'],
  /** VS Code (desktop and in the browser) registers these beside its loopback ones (microsoft/vscode#278512; not in VS Code's own docs). */
  vscodeWeb: ['https://vscode.dev/redirect', 'https://insiders.vscode.dev/redirect'],
  /** Cursor's custom scheme, as Cursor registers it (with `application_type: web`); not confirmed by Cursor's own docs. */
  cursor: ['cursor://anysphere.cursor-mcp/oauth/callback'],
  /** MCP Inspector, on any loopback port (6274 by default), normal and debug flows. */
  inspector: ['http://localhost:*/oauth/callback', 'http://localhost:*/oauth/callback/debug'],
} as const satisfies Record<string, readonly string[]>

export type PresetName = keyof typeof REDIRECT_PRESETS

/**
 * The Client ID Metadata Documents (their URLs are the client ids) the
 * presets' clients publish, so a document client is counted under its family
 * whatever redirect URI it uses. Switching a preset on or off still acts on
 * redirect URIs only: a document's redirect URIs pass the allowlist like any.
 */
export const METADATA_DOCUMENTS: Readonly<Partial<Record<PresetName, readonly string[]>>> = {
  // ChatGPT's public document, with none and private_key_jwt and a jwks_uri: not confirmed by OpenAI
  // (third-party notes quoting its changelog; SEP-3149 in the MCP specification repository names it).
  chatgpt: ['https://chatgpt.com/oauth/client.json'],
  // Claude's hosted surfaces (Anthropic's connector authentication docs, claude.com/docs/connectors/building/authentication).
  claude: ['https://claude.ai/oauth/mcp-oauth-client-metadata'],
  // Claude Code, CIMD since 2.1.81, with loopback redirects (the same Anthropic page).
  loopback: ['https://claude.ai/oauth/claude-code-client-metadata'],
  // VS Code (third-party notes; not confirmed by Microsoft's own docs).
  vscodeWeb: ['https://vscode.dev/oauth/client-metadata.json'],
}
export const PRESET_NAMES = Object.keys(REDIRECT_PRESETS) as PresetName[]
export type PresetSwitches = Readonly<Record<PresetName, boolean>>

const compiled = new Map(PRESET_NAMES.map((name) => [name, new RedirectAllowlist(REDIRECT_PRESETS[name])]))

/** Every pattern the switched-on presets allow, then the extra entries. */
export function allowlistSources(presets: PresetSwitches, extra: readonly string[]): string[] {
  return [...PRESET_NAMES.filter((name) => presets[name]).flatMap((name) => REDIRECT_PRESETS[name]), ...extra]
}

/** The presets whose patterns allow `url`. */
export function presetsAllowing(url: URL): PresetName[] {
  return PRESET_NAMES.filter((name) => compiled.get(name)!.allows(url))
}

/** Why an allowlist refused `url`, for the error description: names a switched-off preset that would allow it. */
export function refusalReason(url: URL, presets: PresetSwitches): string {
  const off = presetsAllowing(url).filter((name) => !presets[name])
  if (off.length) return `it belongs to the ${off.join(', ')} preset, which is switched off in redirectPresets`
  return 'it matches no enabled preset and no allowedRedirectUris entry'
}

/**
 * The client family a redirect URI belongs to, for metrics: the preset whose
 * metadata document the client id is, else the most specific preset of the
 * redirect URI (MCP Inspector before any loopback client), or `other`.
 */
export function presetOf(redirectUri: string, clientId?: string): PresetName | 'other' {
  const documented = clientId === undefined ? undefined : PRESET_NAMES.find((name) => METADATA_DOCUMENTS[name]?.includes(clientId))
  if (documented) return documented
  if (!URL.canParse(redirectUri)) return 'other'
  const names = presetsAllowing(new URL(redirectUri))
  return names.find((name) => name !== 'loopback') ?? names[0] ?? 'other'
}
