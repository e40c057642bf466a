/**
 * Live configuration: the gateway watches its configuration file and takes
 * SIGHUP. A valid file replaces the redirect URI allowlist at once; an invalid
 * one is refused with one log line naming the field and the reason, and the
 * previous configuration keeps serving. Every other key shapes something built
 * once at start-up (metadata, the upstream client, the listener, the store),
 * so a change to it is logged as needing a restart and not applied.
 */
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Gateway } from '../context.ts'
import { parseConfigText, readConfigFile } from './load.ts'
import type { Config } from './schema.ts'
import { allowlistSources } from '../policy/presets.ts'
import { RedirectAllowlist } from '../policy/redirect-uri.ts'

/** The keys a reload applies; everything else needs a restart. */
export const LIVE_KEYS = ['allowedRedirectUris'] as const

export interface ReloadLog {
  info(details: object, message: string): void
  warn(details: object, message: string): void
  error(details: object, message: string): void
}

export interface ConfigWatcher {
  /** Re-reads the file now, even when it looks unchanged (SIGHUP). */
  reload(): void
  close(): void
}

const isMapping = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === 'object' && !Array.isArray(value)

/** Dotted names of the settings that differ; a list counts as one setting. Names only: values can be secret. */
export function changedKeys(before: unknown, after: unknown, prefix = ''): string[] {
  if (isMapping(before) && isMapping(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    return keys.flatMap((key) => changedKeys(before[key], after[key], prefix ? `${prefix}.${key}` : key))
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix]
}

/** Applies the live keys of a freshly validated configuration; returns the changed keys that need a restart. */
export function applyLiveConfig(gateway: Gateway, next: Config): string[] {
  // The presets switched on at start-up stay on: redirectPresets needs a restart, like every key but the list.
  gateway.allowlist = new RedirectAllowlist(allowlistSources(gateway.config.redirectPresets, next.allowedRedirectUris))
  const live = new Set<string>(LIVE_KEYS)
  return changedKeys(gateway.config, next).filter((key) => !live.has(key.split('.')[0]!))
}

/** A ConfigError's lines ("invalid configuration (file):", "  field: reason", …) as one log line. */
function oneLine(message: string): string {
  const [head = '', ...issues] = message.split('\n').map((line) => line.trim())
  return issues.length ? `${head} ${issues.join('; ')}` : head
}

/**
 * Watches the file's directory rather than the file, because editors and
 * Kubernetes ConfigMaps replace the file (a new inode) instead of writing it.
 * Events are debounced; a slow poll catches filesystems without events. A
 * file is applied only when its text changed, so a half-written file that
 * fails is retried once the write completes, and logged once, not every poll.
 */
export function watchConfig(gateway: Gateway, options: { path: string; env: NodeJS.ProcessEnv; log: ReloadLog; debounceMs?: number; pollMs?: number }): ConfigWatcher {
  const { path, env, log } = options
  let lastText: string | undefined = readOrUndefined(path)
  let debounce: NodeJS.Timeout | undefined

  const check = (force: boolean) => {
    let text: string
    try {
      text = readConfigFile(path)
    } catch (err) {
      if (lastText !== undefined) log.error({ file: path }, `configuration not reloaded, the previous one keeps serving: ${(err as Error).message}`)
      lastText = undefined
      return
    }
    if (!force && text === lastText) return
    lastText = text
    try {
      const next = parseConfigText(text, env, path)
      const restartOnly = applyLiveConfig(gateway, next)
      log.info({ file: path, allowedRedirectUris: next.allowedRedirectUris.length }, 'configuration reloaded: the redirect URI allowlist is applied')
      if (restartOnly.length) log.warn({ keys: restartOnly }, `configuration changes that need a restart were not applied: ${restartOnly.join(', ')}`)
    } catch (err) {
      log.error({ file: path }, `configuration not reloaded, the previous one keeps serving: ${oneLine((err as Error).message)}`)
    }
  }
  const soon = () => {
    clearTimeout(debounce)
    debounce = setTimeout(() => check(false), options.debounceMs ?? 200)
  }

  let watcher: FSWatcher | undefined
  try {
    watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
      // Other files in the directory are ignored, except the ones a ConfigMap swaps (..data).
      if (name === null || name === basename(path) || name.startsWith('..')) soon()
    })
    watcher.on('error', () => watcher?.close())
  } catch {
    // No events on this filesystem: the poll below still sees every edit.
  }
  const poll = setInterval(() => check(false), options.pollMs ?? 2000)
  poll.unref()

  return {
    reload: () => check(true),
    close() {
      clearTimeout(debounce)
      clearInterval(poll)
      watcher?.close()
    },
  }
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readConfigFile(path)
  } catch {
    return undefined
  }
}
