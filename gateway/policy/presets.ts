/**
 * Named redirect URI presets for the MCP clients the gateway supports. Ops
 * switch each one on or off (`redirectPresets` in the config);
 * `allowedRedirectUris` adds entries of their own. The patterns use the
 * language of redirect-uri.ts: wildcards never cross a `/` or touch a host.
 * Pure: no Fastify here.
 */
import { RedirectAllowlist } from './redirect-uri.ts'

export const REDIRECT_PRESETS = {
  /** ChatGPT connectors (the id changes when a connector is recreated), the legacy connector redirect, and GPT Actions on both hosts. */
  chatgpt: [
    'https://chatgpt.com/connector/oauth/*',
    'https://chatgpt.com/connector_platform_oauth_redirect',
    'https://chat.openai.com/aip/g-*/oauth/callback',
    'https://chatgpt.com/aip/g-*/oauth/callback',
  ],
  /** Claude on the web and desktop. */
  claude: ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback'],
  /**
   * Native clients listening on loopback (RFC 8252 §7.3): any port, and any
   * path, since whoever holds a loopback port receives every path on it, so a
   * path rule would protect nothing. Claude Code uses `/callback`, VS Code `/`,
   * MCP Inspector `/oauth/callback`; other CLIs use paths of their own.
   */
  loopback: ['http://localhost:*/**', 'http://127.0.0.1:*/**', 'http://[::1]:*/**'],
  /** VS Code in the browser. */
  vscodeWeb: ['https://vscode.dev/redirect', 'https://insiders.vscode.dev/redirect'],
  /** Cursor's custom scheme. */
  cursor: ['cursor://anysphere.cursor-mcp/oauth/callback'],
  /** MCP Inspector, on any loopback port (6274 by default), normal and debug flows. */
  inspector: ['http://localhost:*/oauth/callback', 'http://localhost:*/oauth/callback/debug'],
} as const satisfies Record<string, readonly string[]>

export type PresetName = keyof typeof REDIRECT_PRESETS
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
 * The client family a redirect URI belongs to, for metrics: the most specific
 * preset (MCP Inspector before any loopback client), or `other`.
 */
export function presetOf(redirectUri: string): PresetName | 'other' {
  if (!URL.canParse(redirectUri)) return 'other'
  const names = presetsAllowing(new URL(redirectUri))
  return names.find((name) => name !== 'loopback') ?? names[0] ?? 'other'
}
