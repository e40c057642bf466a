/**
 * The deploy kit's queries against a real Prometheus (Debian's `prometheus`)
 * scraping real gateways: two replicas on Redis (job oauth-gateway, as the
 * alerts expect) and one on the in-memory store (job oauth-gateway-memory),
 * with METRICS_TOKEN set and sent as in production. Complete flows and a few
 * failures run through them; after two scrapes every recording rule of
 * deploy/prometheus/rules.yml returns a series, every alert expression of
 * alerts.yml is valid and quiet on this healthy deployment while every metric
 * it reads is present, and every panel query of the Grafana dashboard returns
 * a series. A metric renamed in the gateway breaks this test. Last, Redis
 * stops, and the Redis and ready-replica alerts' expressions turn true.
 */
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, stringify } from 'yaml'
import { startClientSite } from '../support/client-site.ts'
import { pkcePair } from '../support/flow.ts'
import { freePort } from '../support/ports.ts'
import { startPrivateRedis } from '../support/redis.ts'
import { completeFlow, refresh, register, registration, startCluster, type Cluster, type Replica, type TestClient } from '../support/replicas.ts'

// Three gateway processes, two upstreams and Prometheus waiting on scrapes: a minute on a loaded machine.
t.setTimeout(240_000)

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url))
const METRICS_TOKEN = 'metrics-token-for-the-test-0123456789'
const SCRAPE_SECONDS = 1

const site = await startClientSite()
const settings = (file: Record<string, any>) => ({
  ...file,
  clientMetadataDocuments: { developmentAllowLoopback: true, timeoutMs: 1000 },
  // Low enough for the test to meet it.
  limits: { register: { perIp: { max: 6, windowSeconds: 60 } } },
})
// A Redis of the test's own, which the last test stops.
const redis = await startPrivateRedis(t)
const cluster = await startCluster({ replicas: 2, redisUrl: redis.url, config: settings, env: { METRICS_TOKEN } })
const single = await startCluster({ replicas: 1, config: settings, env: { METRICS_TOKEN } })
t.teardown(async () => {
  await Promise.all([cluster.close(), single.close(), site.close()])
})

const prometheus = await startPrometheus({
  'oauth-gateway': cluster.replicas,
  'oauth-gateway-memory': single.replicas,
})
t.teardown(() => prometheus.stop())

/** Prometheus on a free loopback port, its data in a temporary directory, the deploy kit's rules loaded. */
async function startPrometheus(jobs: Record<string, Replica[]>) {
  const directory = mkdtempSync(join(tmpdir(), 'prometheus-'))
  const port = await freePort()
  writeFileSync(join(directory, 'metrics-token'), METRICS_TOKEN)
  writeFileSync(join(directory, 'prometheus.yml'), stringify({
    global: { scrape_interval: `${SCRAPE_SECONDS}s`, scrape_timeout: `${SCRAPE_SECONDS}s`, evaluation_interval: `${SCRAPE_SECONDS}s` },
    rule_files: [join(DEPLOY, 'prometheus/rules.yml'), join(DEPLOY, 'prometheus/alerts.yml')],
    scrape_configs: Object.entries(jobs).map(([job, replicas]) => ({
      job_name: job,
      authorization: { type: 'Bearer', credentials_file: join(directory, 'metrics-token') },
      static_configs: [{ targets: replicas.map((replica) => new URL(replica.url).host) }],
    })),
  }))
  const child = spawn('prometheus', [
    `--config.file=${join(directory, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(directory, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'] })
  let output = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    if (output.length < 20_000) output += chunk.toString()
  })
  const exited = once(child, 'exit')
  const url = `http://127.0.0.1:${port}`
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
    rmSync(directory, { recursive: true, force: true })
  }
  const deadline = Date.now() + 30_000
  while (!(await fetch(`${url}/-/ready`).then((response) => response.ok, () => false))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop()
      throw new Error(`prometheus did not start:\n${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return { url, stop, output: () => output }
}

interface Sample {
  metric: Record<string, string>
  value: [number, string]
}

async function api<T>(path: string): Promise<T> {
  const response = await fetch(`${prometheus.url}/api/v1/${path}`)
  const body = (await response.json()) as { status: string; data: T; error?: string }
  if (body.status !== 'success') throw new Error(`${path}: ${body.error}`)
  return body.data
}

async function query(expr: string): Promise<Sample[]> {
  const data = await api<{ resultType: string; result: Sample[] }>(`query?query=${encodeURIComponent(expr)}`)
  if (data.resultType !== 'vector') throw new Error(`${expr}: a ${data.resultType}, not a vector`)
  return data.result
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface Target {
  scrapeUrl: string
  labels: Record<string, string>
  health: string
  lastScrape: string
  lastError: string
}

/** Waits until every target was scraped `count` times from now on, then until the rules were evaluated after that. */
async function scrapesAfterNow(count: number) {
  const since = Date.now()
  const deadline = since + 60_000
  const scrapes = new Map<string, Set<number>>()
  for (;;) {
    const { activeTargets } = await api<{ activeTargets: Target[] }>('targets')
    for (const target of activeTargets) {
      const at = Date.parse(target.lastScrape)
      if (at > since) scrapes.set(target.scrapeUrl, (scrapes.get(target.scrapeUrl) ?? new Set()).add(at))
    }
    if (activeTargets.length && activeTargets.every((target) => (scrapes.get(target.scrapeUrl)?.size ?? 0) >= count)) break
    if (Date.now() > deadline) throw new Error(`not scraped ${count} times: ${JSON.stringify(activeTargets)}`)
    await sleep(200)
  }
  const scraped = Math.max(...[...scrapes.values()].flatMap((times) => [...times]))
  for (;;) {
    const { groups } = await api<{ groups: Array<{ lastEvaluation: string }> }>('rules')
    if (groups.length && groups.every((group) => Date.parse(group.lastEvaluation) > scraped)) return
    if (Date.now() > deadline) throw new Error('the rules were not evaluated')
    await sleep(200)
  }
}

// --- traffic: complete flows and a few failures --------------------------------

async function signIn(cluster: Cluster, steps: { authorize: Replica; callback: Replica; token: Replica }, refreshOn: Replica) {
  const client = await register(steps.authorize)
  const answer = await completeFlow(cluster, client, steps)
  if (answer.status !== 200) throw new Error(`the flow ended with ${answer.status}: ${await answer.text()}`)
  const tokens = (await answer.json()) as { refresh_token: string }
  const refreshed = await refresh(refreshOn, client, tokens.refresh_token)
  if (refreshed.status !== 200) throw new Error(`the refresh answered ${refreshed.status}`)
  return { client, refreshToken: ((await refreshed.json()) as { refresh_token: string }).refresh_token }
}

async function authorize(replica: Replica, clientId: string, redirectUri: string) {
  const url = new URL('/authorize', replica.url)
  url.search = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: redirectUri, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', state: 'x' }).toString()
  return fetch(url, { redirect: 'manual' })
}

async function revokeAndRefresh(replica: Replica, client: TestClient, refreshToken: string) {
  const revoked = await fetch(`${replica.url}/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: refreshToken, token_type_hint: 'refresh_token', client_id: client.client_id }),
  })
  if (revoked.status !== 200) throw new Error(`revocation answered ${revoked.status}`)
  return refresh(replica, client, refreshToken)
}

// The upstream grants behind the cluster's connections, so that the test can end them at the upstream.
const upstreamGrants = new Set<string>()
cluster.upstream.provider.on('refresh_token.saved', (token) => {
  const { grantId } = token as { grantId?: string }
  if (grantId) upstreamGrants.add(grantId)
})

/** NeonPanel ends every grant it gave the gateway (a user signing out everywhere, say): the next refresh is refused there. */
async function upstreamEndsGrants() {
  for (const id of upstreamGrants) {
    const grant = (await cluster.upstream.provider.Grant.find(id)) as unknown as { destroy(): Promise<void> } | undefined
    await grant?.destroy()
  }
  upstreamGrants.clear()
}

/** One round of traffic: a sign-in with a refresh on each job, and a few failures. */
async function round(t: Test, number: number) {
  const [a, b] = cluster.replicas as [Replica, Replica]
  const signedIn = await signIn(cluster, { authorize: a, callback: b, token: a }, b)
  const [only] = single.replicas as [Replica]
  await signIn(single, { authorize: only, callback: only, token: only }, only)

  t.equal((await revokeAndRefresh(a, signedIn.client, signedIn.refreshToken)).status, 400, 'a revoked refresh token: the gateway refuses')
  const other = await signIn(cluster, { authorize: b, callback: a, token: b }, a)
  await upstreamEndsGrants()
  t.equal((await refresh(b, other.client, other.refreshToken)).status, 400, 'a grant the upstream ended: the upstream refuses the refresh')
  t.equal((await registration(b, { redirect_uris: ['https://evil.example/callback'] })).status, 400, 'a redirect URI the allowlist refuses')
  t.equal((await fetch(`${b.url}/nowhere`)).status, 404)
  t.equal((await authorize(b, 'no-such-client', 'https://chatgpt.com/connector/oauth/x')).status, 400, 'an unknown client')
  // A new document each round: a cached one is not fetched again.
  const document = `${site.url}/client-${number}.json`
  site.json(`/client-${number}.json`, { client_id: document, client_name: 'Document Client', redirect_uris: [`${site.url}/callback`], token_endpoint_auth_method: 'none' })
  t.equal((await authorize(a, document, `${site.url}/callback`)).status, 200, 'a client metadata document: the consent page')
  t.equal((await authorize(b, `${site.url}/missing.json`, `${site.url}/callback`)).status, 400, 'a document that cannot be fetched')
}

t.test('traffic: two rounds of complete flows and a few failures, each followed by two scrapes', async (t) => {
  // Round 1 makes the series; round 2 their increase, which rate() needs.
  await round(t, 1)
  await scrapesAfterNow(2)
  await round(t, 2)
  const [a, b] = cluster.replicas as [Replica, Replica]
  let limited = 0
  for (let i = 0; i < 8; i++) if ((await registration(i % 2 ? a : b)).status === 429) limited++
  t.ok(limited > 0, `${limited} registrations over the limit, counted across the replicas`)
  await scrapesAfterNow(2)

  const { activeTargets } = await api<{ activeTargets: Target[] }>('targets')
  t.equal(activeTargets.length, 3)
  for (const target of activeTargets) t.equal(target.health, 'up', `${target.labels.job} ${target.labels.instance} scraped with the token${target.lastError ? `: ${target.lastError}` : ''}`)
  const completed = await query('sum by (job) (oauth_gateway_flows_completed_total)')
  t.same(Object.fromEntries(completed.map((sample) => [sample.metric.job, Number(sample.value[1])])), { 'oauth-gateway': 4, 'oauth-gateway-memory': 2 }, 'the flows, as Prometheus sees them')
})

interface Rule {
  record?: string
  alert?: string
  expr: string
}
const rulesOf = (file: string) => (parse(readFileSync(join(DEPLOY, 'prometheus', file), 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((group) => group.rules)
const recordingRules = rulesOf('rules.yml')
const alerts = rulesOf('alerts.yml')
const recorded = new Set(recordingRules.map((rule) => rule.record!))

/** The series names an expression reads: the gateway's metrics, recorded series and `up`, outside label matchers and strings. */
function seriesRead(expr: string): string[] {
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '')
  const names = bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []
  return [...new Set(names.filter((name) => name.startsWith('oauth_gateway_') || recorded.has(name) || name === 'up'))]
}

t.test('Prometheus loaded every rule, and evaluates each without error', async (t) => {
  const { groups } = await api<{ groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> }>('rules')
  const loaded = groups.flatMap((group) => group.rules)
  t.equal(loaded.length, recordingRules.length + alerts.length, 'all of rules.yml and alerts.yml')
  for (const rule of loaded) t.equal(rule.health, 'ok', `${rule.name}${rule.lastError ? `: ${rule.lastError}` : ''}`)
})

t.test('every recording rule returns a series, evaluated by Prometheus and as a query', async (t) => {
  for (const rule of recordingRules) {
    t.ok((await query(rule.record!)).length > 0, `${rule.record} is recorded`)
    t.ok((await query(rule.expr)).length > 0, `${rule.record}: its expression returns a series`)
  }
  const ready = await query('job:oauth_gateway_ready_replicas:count')
  t.same(Object.fromEntries(ready.map((sample) => [sample.metric.job, Number(sample.value[1])])), { 'oauth-gateway': 2, 'oauth-gateway-memory': 1 }, 'ready replicas per job')
  const success = await query('job_preset:oauth_gateway_sign_in_success:ratio_rate30m{job="oauth-gateway"}')
  const ratios = Object.fromEntries(success.map((sample) => [sample.metric.preset, Number(sample.value[1])]))
  t.same(Object.keys(ratios).sort(), ['chatgpt', 'loopback'], 'a ratio for each preset that started flows')
  t.equal(ratios.chatgpt, 1, 'every ChatGPT flow completed')
  t.equal(ratios.loopback, 0, 'the document client stopped at the consent page')
})

t.test('every alert expression is valid, reads metrics that exist, and stays quiet on this healthy deployment', async (t) => {
  for (const alert of alerts) {
    const names = seriesRead(alert.expr)
    t.ok(names.length > 0, `${alert.alert} reads ${names.join(', ')}`)
    for (const name of names) t.ok((await query(`count(${name})`)).length > 0, `${alert.alert}: ${name} has series`)
    t.same(await query(alert.expr), [], `${alert.alert}: a valid, empty result`)
  }
  const { alerts: active } = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('alerts')
  t.same(active.map((alert) => alert.labels.alertname), [], 'nothing pending or firing')
})

t.test('every panel query of the Grafana dashboard returns a series', async (t) => {
  const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana/oauth-gateway.json'), 'utf8')) as {
    panels: Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>
    templating: { list: Array<{ name: string; query?: unknown }> }
  }
  const panels = dashboard.panels.filter((panel) => panel.type !== 'row')
  t.ok(panels.length >= 20, `${panels.length} panels`)
  for (const panel of panels) {
    t.ok(panel.targets?.length, `${panel.title} has a query`)
    for (const target of panel.targets ?? []) {
      // As Grafana sends it: every job, and a rate window of a few scrapes.
      const expr = target.expr.replaceAll('$job', '.*').replaceAll('$__rate_interval', '1m')
      t.notMatch(expr, /\$/, `${panel.title}: no variable left`)
      const result = await query(expr)
      t.ok(result.length > 0, `${panel.title}: ${target.expr}`)
    }
  }
  // The job variable lists both jobs.
  const jobs = await api<string[]>(`label/job/values?${new URLSearchParams({ 'match[]': 'oauth_gateway_http_requests_total' })}`)
  t.same(jobs.sort(), ['oauth-gateway', 'oauth-gateway-memory'])
})

t.test('Redis stops: the Redis and ready-replica alert expressions turn true for the replicas on it', async (t) => {
  await redis.stop()
  await scrapesAfterNow(2)
  const expressionOf = (name: string) => alerts.find((alert) => alert.alert === name)!.expr
  const unavailable = await query(expressionOf('OAuthGatewayRedisUnavailable'))
  t.same(unavailable.map((sample) => sample.metric.instance).sort(), cluster.replicas.map((replica) => new URL(replica.url).host).sort(), 'both replicas on Redis')
  const notReady = await query(expressionOf('OAuthGatewayReplicaNotReady'))
  t.equal(notReady.length, 2, 'both are not ready')
  const tooFew = await query(expressionOf('OAuthGatewayTooFewReadyReplicas'))
  t.same(tooFew.map((sample) => [sample.metric.job, Number(sample.value[1])]), [['oauth-gateway', 0]], 'no ready replica in the job')
  const { alerts: active } = await api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>('alerts')
  t.ok(active.some((alert) => alert.labels.alertname === 'OAuthGatewayRedisUnavailable' && alert.state === 'pending'), 'Prometheus holds the alert pending (for: 1m)')
})
