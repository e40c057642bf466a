/**
 * Several gateway processes (`node gateway/server.ts`, as deployed) behind
 * one public URL, in front of one stand-in upstream and the stand-in MCP
 * server. A load balancer without sticky sessions listens on the public URL:
 * round robin, unless the test names the replicas for the next requests
 * (`route`), so a browser keeps one origin (its cookies) while its steps land
 * where the test wants. Back-channel calls and the browser's return from the
 * upstream go straight to a replica (`on(replica, url)`).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, request } from 'node:http'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { CookieBrowser, signInAndFollow } from './browser.ts'
import { closeServer, listen } from './http.ts'
import { startMcpServer, type StandInMcpServer } from './mcp-server.ts'
import { freePort } from './ports.ts'
import { CHATGPT_REDIRECT, gatewayFile, TEST_SECRET } from './stack.ts'
import { startUpstream, type StandInUpstream } from './upstream.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface Replica {
  url: string
  /** Everything the process wrote, one entry per line. */
  lines: string[]
  /** Its JSON log lines. */
  logs(): Array<Record<string, any>>
  /** Resolves with the first log line (already written or still to come) that `match` accepts. */
  waitForLog(match: (line: Record<string, any>) => boolean, within?: number): Promise<Record<string, any>>
  signal(name: NodeJS.Signals): void
  stop(): Promise<void>
}

export interface ClusterOptions {
  replicas: number
  /** REDIS_URL of every replica; absent: each replica keeps state in memory. */
  redisUrl?: string
  /** Changes to the config file object (a random redis.keyPrefix is set already). */
  config?: (file: Record<string, any>) => Record<string, any>
  secret?: string
  /** More environment for every replica (e.g. METRICS_TOKEN). */
  env?: Record<string, string>
}

export interface Cluster {
  /** What clients and the upstream see: the load balancer, e.g. http://127.0.0.1:PORT. */
  publicUrl: string
  upstream: StandInUpstream
  mcp: StandInMcpServer
  configFile: string
  /** The state file (SQLite) the replicas use without Redis. */
  statePath: string
  keyPrefix: string
  /** The replicas started first. */
  replicas: Replica[]
  /** The replicas running now, in start order. */
  running(): Replica[]
  /** The next requests at the public URL go to these replicas, in order; then round robin again. */
  route(...replicas: Replica[]): void
  /** Starts one more replica with the cluster's file and environment, plus `env`. */
  startReplica(env?: Record<string, string>): Promise<Replica>
  /** Stops every running replica and starts `count` new ones with `env` (a deploy). */
  restart(count: number, env?: Record<string, string>): Promise<Replica[]>
  /** Replaces the config file the way editors and ConfigMaps do: a new file renamed over the old. */
  writeConfig(file: Record<string, any>): void
  close(): Promise<void>
}

export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const running = new Set<Replica>()
  const balancer = await startLoadBalancer(() => [...running])
  const publicUrl = balancer.url
  const upstream = await startUpstream({ redirectUris: [`${publicUrl}/callback`] })
  const mcp = await startMcpServer({
    upstream: { introspectionEndpoint: `${upstream.issuer}/token/introspection`, ...upstream.introspection },
    resourceMetadataUrl: `${publicUrl}/.well-known/oauth-protected-resource/mcp`,
  })
  const keyPrefix = `test-${randomBytes(4).toString('hex')}:`
  const directory = mkdtempSync(join(tmpdir(), 'gateway-replicas-'))
  const configFile = join(directory, 'gateway.yaml')
  const base = { ...gatewayFile(publicUrl, upstream.issuer, mcp.url), redis: { keyPrefix, commandTimeoutMs: 500 } }
  const writeConfig = (file: Record<string, any>) => {
    const next = join(directory, `.gateway.yaml.${randomBytes(4).toString('hex')}`)
    writeFileSync(next, stringify(file))
    renameSync(next, configFile)
  }
  writeConfig(options.config ? options.config(base) : base)

  const env: Record<string, string> = {
    GATEWAY_CONFIG: configFile,
    GATEWAY_SECRET: options.secret ?? TEST_SECRET,
    UPSTREAM_CLIENT_SECRET: upstream.clientSecret,
    // Without Redis, grants live in this file, which a restart of the cluster keeps.
    GATEWAY_STATE_PATH: join(directory, 'state.sqlite'),
    ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
    ...options.env,
  }
  const startOne = async (extra: Record<string, string> = {}) => {
    const replica = await startReplica({ ...env, ...extra })
    running.add(replica)
    const stop = replica.stop
    replica.stop = async () => {
      running.delete(replica)
      await stop()
    }
    return replica
  }
  const close = async () => {
    await Promise.all([...running].map((replica) => replica.stop()))
    await balancer.close()
    await mcp.close()
    await upstream.close()
    rmSync(directory, { recursive: true, force: true })
  }
  // A replica that fails to start must not leave the others running after the test process is gone.
  const started = await Promise.allSettled(Array.from({ length: options.replicas }, () => startOne()))
  const failed = started.find((result) => result.status === 'rejected')
  if (failed) {
    await close()
    throw failed.reason
  }
  const replicas = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))

  return {
    publicUrl,
    upstream,
    mcp,
    configFile,
    statePath: env.GATEWAY_STATE_PATH!,
    keyPrefix,
    replicas,
    running: () => [...running],
    route: balancer.route,
    startReplica: startOne,
    async restart(count, extra = {}) {
      await Promise.all([...running].map((replica) => replica.stop()))
      return Promise.all(Array.from({ length: count }, () => startOne(extra)))
    },
    writeConfig,
    close,
  }
}

/** Round robin over the running replicas, except for the requests the test routes (`route`). */
async function startLoadBalancer(replicas: () => Replica[]) {
  let turn = 0
  let plan: Replica[] = []
  const server = createServer((incoming, outgoing) => {
    const running = replicas()
    const target = plan.shift() ?? running[turn++ % running.length]
    if (!target) return void outgoing.writeHead(503).end()
    const { hostname, port } = new URL(target.url)
    const forwarded = request({ hostname, port, method: incoming.method, path: incoming.url, headers: incoming.headers }, (answer) => {
      outgoing.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(outgoing)
    })
    forwarded.on('error', () => (outgoing.headersSent ? outgoing.destroy() : outgoing.writeHead(502).end()))
    incoming.pipe(forwarded)
  })
  const port = await listen(server, 0, '127.0.0.1')
  return {
    url: `http://127.0.0.1:${port}`,
    route: (...next: Replica[]) => void (plan = next),
    close: () => closeServer(server),
  }
}

/** Spawns `node gateway/server.ts` on a free loopback port and waits until /readyz says ready. */
export async function startReplica(env: Record<string, string>): Promise<Replica> {
  const port = await freePort()
  const child: ChildProcess = spawn(process.execPath, ['gateway/server.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: string[] = []
  const listeners = new Set<() => void>()
  // Whole lines only: a JSON log line can arrive in two chunks.
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      if (!line) return
      lines.push(line)
      for (const listener of listeners) listener()
    })
  }
  // 'close', not 'exit': only then is the output read to its end.
  const closed = once(child, 'close')

  const logs = () =>
    lines.flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, any>]
      } catch {
        return []
      }
    })
  const replica: Replica = {
    url: `http://127.0.0.1:${port}`,
    lines,
    logs,
    waitForLog(match, within = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs().find(match)
          if (!found) return
          cleanup()
          resolve(found)
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`no matching log line within ${within} ms; the replica wrote:\n${lines.join('\n')}`))
        }, within)
        const cleanup = () => {
          clearTimeout(timer)
          listeners.delete(check)
        }
        listeners.add(check)
        check()
      })
    },
    signal: (name) => child.kill(name),
    async stop() {
      const running = child.exitCode === null && child.signalCode === null
      if (running) child.kill('SIGTERM')
      const timer = running ? setTimeout(() => child.kill('SIGKILL'), 5000) : undefined
      await closed
      clearTimeout(timer)
    },
  }

  // Generous: several processes starting at once on a loaded machine take a while.
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await closed
      throw new Error(`the gateway exited with ${child.exitCode ?? child.signalCode}:\n${lines.join('\n')}`)
    }
    const ready = await fetch(`${replica.url}/readyz`).then((response) => response.ok, () => false)
    if (ready) return replica
    if (Date.now() > deadline) {
      await replica.stop()
      throw new Error(`the gateway did not become ready:\n${lines.join('\n')}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** The same URL, sent to `replica` instead of the public URL (what the load balancer would do). */
export function on(replica: Replica, url: string | URL): string {
  const target = new URL(url)
  const origin = new URL(replica.url)
  target.protocol = origin.protocol
  target.host = origin.host
  return target.href
}

// --- one connector's steps, each sent to a replica of the test's choice -----

export interface TestClient {
  client_id: string
  client_secret?: string
  token_endpoint_auth_method: 'none' | 'client_secret_basic' | 'client_secret_post'
  redirect_uris: string[]
}

export async function register(replica: Replica, metadata: Record<string, unknown> = {}): Promise<TestClient> {
  const response = await registration(replica, metadata)
  if (response.status !== 201) throw new Error(`registration failed with ${response.status}: ${await response.text()}`)
  return (await response.json()) as TestClient
}

export function registration(replica: Replica, metadata: Record<string, unknown> = {}): Promise<Response> {
  return fetch(`${replica.url}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'ChatGPT',
      redirect_uris: [CHATGPT_REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
      ...metadata,
    }),
  })
}

export interface SignedIn {
  /** Where the upstream sent the browser back: the gateway's callback at the public URL. */
  callback: URL
  verifier: string
  state: string
}

/**
 * The browser starts at the public URL's /authorize, which the load balancer
 * sends to `replica`; the consent page is answered on `consent` (by default
 * another replica); the browser signs in at the upstream and is sent back
 * towards the public URL's /callback, where the test takes over.
 */
export async function authorizeAndSignIn(cluster: Cluster, replica: Replica, client: TestClient, consent = nextAfter(cluster, replica)): Promise<SignedIn> {
  const verifier = randomBytes(32).toString('base64url')
  const state = randomBytes(8).toString('hex')
  const authorize = new URL('/authorize', cluster.publicUrl)
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uris[0]!,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state,
    scope: 'openid offline_access',
    resource: cluster.mcp.url,
  }).toString()
  const callback = new URL('/callback', cluster.publicUrl).href
  cluster.route(replica, consent)
  try {
    const result = await signInAndFollow(new CookieBrowser(), authorize.href, cluster.upstream.account, (url) => url.href.startsWith(`${callback}?`))
    if (!result.redirect) throw new Error(`the sign-in did not come back to the gateway: ${result.response?.status} ${result.body?.slice(0, 300)}`)
    return { callback: result.redirect, verifier, state }
  } finally {
    cluster.route()
  }
}

function nextAfter(cluster: Cluster, replica: Replica): Replica {
  const running = cluster.running()
  return running[(running.indexOf(replica) + 1) % running.length] ?? replica
}

/** The browser arrives at `replica`'s /callback; returns the response (a redirect to the client when it worked). */
export function arriveAt(replica: Replica, callback: URL): Promise<Response> {
  return fetch(on(replica, callback), { redirect: 'manual' })
}

/** The gateway code from a /callback redirect to ChatGPT. */
export function codeFrom(response: Response): string {
  const location = response.headers.get('location')
  const code = location ? new URL(location).searchParams.get('code') : null
  if (response.status !== 302 || !code) throw new Error(`expected a redirect with a code, got ${response.status} ${location}`)
  return code
}

export function tokenRequest(replica: Replica, client: TestClient, parameters: Record<string, string>): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
  const body = new URLSearchParams(parameters)
  if (client.token_endpoint_auth_method === 'client_secret_basic') {
    const credentials = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret!)}`
    headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`
  } else {
    body.set('client_id', client.client_id)
    if (client.token_endpoint_auth_method === 'client_secret_post') body.set('client_secret', client.client_secret!)
  }
  return fetch(`${replica.url}/token`, { method: 'POST', headers, body })
}

export function redeem(replica: Replica, client: TestClient, code: string, signedIn: SignedIn): Promise<Response> {
  return tokenRequest(replica, client, { grant_type: 'authorization_code', code, code_verifier: signedIn.verifier, redirect_uri: client.redirect_uris[0]! })
}

export function refresh(replica: Replica, client: TestClient, refreshToken: string): Promise<Response> {
  return tokenRequest(replica, client, { grant_type: 'refresh_token', refresh_token: refreshToken })
}

/** One whole flow, each step on the replica given (register excluded): returns the token response. */
export async function completeFlow(cluster: Cluster, client: TestClient, steps: { authorize: Replica; callback: Replica; token: Replica }): Promise<Response> {
  const signedIn = await authorizeAndSignIn(cluster, steps.authorize, client)
  const code = codeFrom(await arriveAt(steps.callback, signedIn.callback))
  return redeem(steps.token, client, code, signedIn)
}

/** Whether the upstream still knows an access token (RFC 7662), as the MCP server would ask. */
export async function isActive(cluster: Cluster, accessToken: string): Promise<boolean> {
  const { clientId, clientSecret } = cluster.upstream.introspection
  const response = await fetch(`${cluster.upstream.issuer}/token/introspection`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: accessToken }),
  })
  return ((await response.json()) as { active: boolean }).active
}
