/**
 * The ConfigMap as the kubelet mounts it (deploy/kubernetes mounts it as a
 * directory, never with subPath): gateway.yaml is a symlink to
 * ..data/gateway.yaml, ..data a symlink to a timestamped directory, and an
 * update writes a new timestamped directory, points ..data_tmp at it and
 * renames ..data_tmp over ..data (the kubelet's atomic writer), then removes
 * the old directory. A real gateway process started on such a directory
 * applies the new redirect URI allowlist without a restart.
 */
import t from 'tap'
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { registration, startCluster, type Replica } from '../support/replicas.ts'

const APP = 'https://app.example.com/oauth/callback'

/** A directory laid out as the kubelet lays out a ConfigMap volume, and its update. */
function configMapVolume(file: Record<string, unknown>) {
  const volume = mkdtempSync(join(tmpdir(), 'configmap-'))
  let version = 0
  let current: string | undefined
  const publish = (content: Record<string, unknown>) => {
    const next = `..2026_12_07_00_00_00.${String(++version).padStart(9, '0')}`
    mkdirSync(join(volume, next))
    writeFileSync(join(volume, next, 'gateway.yaml'), stringify(content))
    symlinkSync(next, join(volume, '..data_tmp'))
    renameSync(join(volume, '..data_tmp'), join(volume, '..data'))
    if (current) rmSync(join(volume, current), { recursive: true, force: true })
    current = next
  }
  publish(file)
  symlinkSync('..data/gateway.yaml', join(volume, 'gateway.yaml'))
  return { path: join(volume, 'gateway.yaml'), publish, remove: () => rmSync(volume, { recursive: true, force: true }) }
}

t.test('a ConfigMap update reaches the running gateway: the new allowlist applies without a restart', async (t) => {
  let base: Record<string, any> = {}
  const cluster = await startCluster({ replicas: 0, config: (file) => (base = file) })
  t.teardown(() => cluster.close())
  const volume = configMapVolume(base)
  t.teardown(volume.remove)
  const gateway: Replica = await cluster.startReplica({ GATEWAY_CONFIG: volume.path })
  t.equal((await registration(gateway, { redirect_uris: [APP] })).status, 400, 'not allowed at first')

  volume.publish({ ...base, allowedRedirectUris: [...base.allowedRedirectUris, APP] })
  const reloaded = await gateway.waitForLog((line) => line.msg === 'configuration reloaded: the redirect URI allowlist is applied', 15_000)
  t.equal(reloaded.file, volume.path, 'the file GATEWAY_CONFIG names')
  t.equal((await registration(gateway, { redirect_uris: [APP] })).status, 201, 'the new entry applies')

  // A key that needs a restart, in the next update: named in the log, not applied.
  volume.publish({ ...base, allowedRedirectUris: [...base.allowedRedirectUris, APP], lifetimes: { codeSeconds: 30 } })
  const waiting = await gateway.waitForLog((line) => /need a restart/.test(line.msg ?? ''), 15_000)
  t.same(waiting.keys, ['lifetimes.codeSeconds'])
  t.equal((await registration(gateway, { redirect_uris: [APP] })).status, 201, 'the allowlist still serves')
})
