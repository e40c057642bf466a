/**
 * No Docker engine runs on the test machines, so the packaging is checked by
 * reading it: every service of docker-compose.yml builds from a context,
 * Dockerfile and stage that exist, or runs a pinned image; every file that is
 * mounted, copied into an image or run there exists; the gateway replicas
 * share one public URL, one Redis and one set of keys, the load balancer sends
 * to each of them, and the configuration each replica starts with is valid.
 */
import t from 'tap'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { parseConfigText } from '../gateway/config/load.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
// Compose files use YAML merge keys (<<) to share settings between replicas.
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
}

interface Service {
  image?: string
  build?: { context: string; dockerfile?: string; target?: string }
  command?: string[]
  environment?: Record<string, string>
  volumes?: string[]
  depends_on?: string[] | Record<string, unknown>
}

interface Copy {
  from?: string | undefined
  sources: string[]
  /** Absolute path in the image. */
  destination: string
}

interface Stage {
  name: string
  base: string
  workdir: string
  copies: Copy[]
  runs: string[]
  user?: string
  cmd?: string[]
}

/** The instructions this project's Dockerfile uses: FROM … AS, WORKDIR, COPY [--from], RUN, USER, CMD [exec form]. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = []
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'))
  for (const line of lines) {
    const [instruction = '', ...args] = line.split(/\s+/)
    const stage = stages.at(-1)
    switch (instruction.toUpperCase()) {
      case 'FROM':
        stages.push({ name: args[1]?.toUpperCase() === 'AS' ? args[2]! : `#${stages.length}`, base: args[0]!, workdir: '/', copies: [], runs: [] })
        break
      case 'WORKDIR':
        stage!.workdir = posix.resolve(stage!.workdir, args[0]!)
        break
      case 'COPY': {
        const paths = args.filter((arg) => !arg.startsWith('--'))
        const destination = paths.pop()!
        const resolved = posix.resolve(stage!.workdir, destination) + (destination.endsWith('/') ? '/' : '')
        stage!.copies.push({ from: args.find((arg) => arg.startsWith('--from='))?.slice('--from='.length), sources: paths, destination: resolved })
        break
      }
      case 'RUN':
        stage!.runs.push(args.join(' '))
        break
      case 'USER':
        stage!.user = args[0]!
        break
      case 'CMD':
        stage!.cmd = JSON.parse(line.slice('CMD'.length)) as string[]
        break
    }
  }
  return stages
}

/** Which file of the build context ends up at `path` in the image; undefined when nothing copies it there. */
function contextFileAt(stage: Stage, context: string, path: string): string | undefined {
  for (const copy of [...stage.copies].reverse()) {
    if (copy.from) continue
    const intoDirectory = copy.destination.endsWith('/') || copy.sources.length > 1
    if (intoDirectory) {
      const source = copy.sources.find((candidate) => posix.join(copy.destination, basename(candidate)) === path)
      if (source) return join(context, source)
    } else if (path === copy.destination || path.startsWith(`${copy.destination}/`)) {
      return join(context, copy.sources[0]!, path.slice(copy.destination.length))
    }
  }
  return undefined
}

function dockerfileOf(service: Service) {
  const context = join(ROOT, service.build!.context)
  const path = join(context, service.build!.dockerfile ?? 'Dockerfile')
  return { context, path, stages: parseDockerfile(readFileSync(path, 'utf8')) }
}

const services = Object.entries(compose.services)
const dependencies = (service: Service) => (Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {}))
const portOf = (url: string) => new URL(url).port

t.test('every service builds from a context, Dockerfile and stage that exist, or runs a pinned image', async (t) => {
  t.ok(services.length >= 5, 'redis, the stand-ins, two gateways and a load balancer')
  for (const [name, service] of services) {
    t.ok(service.build || service.image, `${name} names a build or an image`)
    if (service.build) {
      const { context, path, stages } = dockerfileOf(service)
      t.ok(existsSync(context) && statSync(context).isDirectory(), `${name}: build context ${service.build.context} exists`)
      t.ok(existsSync(path), `${name}: ${path} exists`)
      t.ok(service.build.target, `${name}: names its stage`)
      t.ok(stages.some((stage) => stage.name === service.build!.target), `${name}: stage ${service.build.target} is in the Dockerfile`)
    } else {
      t.match(service.image, /^[a-z0-9./-]+:[\w.-]+$/, `${name}: ${service.image} has a tag`)
      t.notMatch(service.image, /:latest$/, `${name}: pinned, not latest`)
    }
    for (const dependency of dependencies(service)) t.ok(compose.services[dependency], `${name} depends on ${dependency}, which is a service`)
  }
})

t.test('every file that is mounted, copied or run exists', async (t) => {
  for (const [name, service] of services) {
    for (const volume of service.volumes ?? []) {
      const [source = ''] = volume.split(':')
      if (source.startsWith('.') || source.startsWith('/')) t.ok(existsSync(join(ROOT, source)), `${name}: mounted ${source} exists`)
      else t.ok(compose.volumes && source in compose.volumes, `${name}: named volume ${source} is declared`)
    }
  }
  const built = services.filter(([, service]) => service.build)
  const dockerfiles = new Map(built.map(([, service]) => [dockerfileOf(service).path, dockerfileOf(service)]))
  for (const { path, context, stages } of dockerfiles.values()) {
    const name = relative(ROOT, path)
    const ignored = existsSync(join(context, '.dockerignore'))
      ? readFileSync(join(context, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'))
      : []
    stages.forEach((stage, i) => {
      for (const copy of stage.copies) {
        if (copy.from) t.ok(stages.slice(0, i).some((earlier) => earlier.name === copy.from), `${name}: COPY --from=${copy.from} is an earlier stage`)
        for (const source of copy.from ? [] : copy.sources) {
          t.ok(existsSync(join(context, source)), `${name} (${stage.name}): COPY ${source} exists`)
          t.notOk(ignored.includes(source), `${name} (${stage.name}): ${source} is not in .dockerignore`)
        }
      }
    })
  }
  for (const [name, service] of built) {
    const { context, stages } = dockerfileOf(service)
    const stage = stages.find((candidate) => candidate.name === service.build!.target)!
    const command = service.command ?? stage.cmd
    t.equal(command?.[0], 'node', `${name} runs node`)
    const script = contextFileAt(stage, context, posix.resolve(stage.workdir, command![1]!))
    t.ok(script && existsSync(script), `${name}: ${command![1]} is copied into the image`)
  }
})

t.test('the gateway image: Node 24, non-root, production dependencies only', async (t) => {
  const [, service] = services.find(([, candidate]) => candidate.build?.target === 'gateway')!
  const { stages } = dockerfileOf(service)
  const gateway = stages.find((stage) => stage.name === 'gateway')!
  t.match(gateway.base, /^node:24(-|$)/, 'Node 24')
  t.ok(gateway.user && gateway.user !== 'root' && gateway.user !== '0', `runs as ${gateway.user}`)
  const modules = gateway.copies.find((copy) => copy.destination.endsWith('/node_modules'))
  t.ok(modules?.from, 'node_modules come from a dependency stage')
  const dependencies = stages.find((stage) => stage.name === modules!.from)!
  t.ok(dependencies.runs.some((run) => /npm ci\b.*--omit=dev/.test(run)), 'installed without dev dependencies')
  t.notOk(gateway.copies.some((copy) => !copy.from && copy.sources.includes('test')), 'no tests or stand-ins in the gateway image')
})

t.test('the doctor runs in the gateway image: copied there, importing only copied files and production dependencies', async (t) => {
  const [, service] = services.find(([, candidate]) => candidate.build?.target === 'gateway')!
  const { context, stages } = dockerfileOf(service)
  const gateway = stages.find((stage) => stage.name === 'gateway')!
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; dependencies: Record<string, string> }
  t.equal(manifest.scripts.doctor, 'node gateway/doctor/main.ts', 'npm run doctor')
  const seen = new Set<string>()
  const pending = ['gateway/doctor/main.ts']
  while (pending.length) {
    const file = pending.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    t.ok(contextFileAt(gateway, context, posix.resolve(gateway.workdir, file)), `${file} is copied into the image`)
    for (const [, specifier = ''] of readFileSync(join(ROOT, file), 'utf8').matchAll(/^import\s(?!type\b)[^'"]*['"]([^'"]+)['"]/gm)) {
      if (specifier.startsWith('.')) pending.push(posix.join(posix.dirname(file), specifier))
      else if (!specifier.startsWith('node:')) {
        const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!
        t.ok(manifest.dependencies[name], `${file} imports ${name}, a production dependency`)
      }
    }
  }
  t.ok(seen.size > 3, `${seen.size} files`)
})

t.test('the gateway replicas share one public URL, one Redis and one set of keys, behind the load balancer', async (t) => {
  const gateways = services.filter(([, service]) => service.build?.target === 'gateway')
  t.ok(gateways.length >= 2, 'at least two replicas')
  const environments = gateways.map(([, service]) => service.environment ?? {})
  for (const key of ['GATEWAY_PUBLIC_URL', 'GATEWAY_SECRET', 'REDIS_URL', 'UPSTREAM_ISSUER', 'MCP_RESOURCE', 'GATEWAY_CONFIG']) {
    t.equal(new Set(environments.map((env) => env[key])).size, 1, `every replica has the same ${key}`)
  }
  const ports = environments.map((env) => env.PORT)
  t.equal(new Set(ports).size, gateways.length, 'each replica its own port (host networking)')
  const shared = environments[0]!

  const redis = compose.services.redis!
  t.equal(portOf(shared.REDIS_URL!), redis.command![redis.command!.indexOf('--port') + 1], 'REDIS_URL points at the redis service')
  const standins = compose.services.standins!.environment!
  t.equal(standins.GATEWAY_PUBLIC_URL, shared.GATEWAY_PUBLIC_URL, 'the stand-in upstream registers the callback at the public URL')
  t.equal(portOf(shared.UPSTREAM_ISSUER!), standins.DEMO_UPSTREAM_PORT, 'UPSTREAM_ISSUER is the stand-in upstream')
  t.equal(portOf(shared.MCP_RESOURCE!), standins.DEMO_MCP_PORT, 'MCP_RESOURCE is the stand-in MCP server')
  for (const [name, service] of gateways) {
    t.ok(dependencies(service).includes('redis'), `${name} starts after Redis`)
  }

  const lb = Object.entries(compose.services).find(([, service]) => service.image?.startsWith('nginx:'))
  t.ok(lb, 'a load balancer')
  const mount = lb![1].volumes!.find((volume) => volume.endsWith('/etc/nginx/nginx.conf:ro'))!
  const nginx = readFileSync(join(ROOT, mount.split(':')[0]!), 'utf8').replace(/#.*$/gm, '')
  t.equal(/listen\s+(?:[\d.]+:)?(\d+)\s*;/.exec(nginx)?.[1], portOf(shared.GATEWAY_PUBLIC_URL!), 'the load balancer listens on the public URL')
  const backends = [...nginx.matchAll(/server\s+127\.0\.0\.1:(\d+)/g)].map((match) => match[1])
  t.same(backends.sort(), [...ports].sort(), 'and sends to every replica')
  t.notMatch(nginx, /ip_hash|sticky|hash\s/, 'without sticky sessions')
  t.match(nginx, /proxy_set_header\s+X-Forwarded-For\s+\$remote_addr\s*;/, 'the load balancer sets the client address, replacing what the client sent')

  // The configuration every replica starts with: the file in the image, with the service's environment.
  const [, first] = gateways[0]!
  const { context, stages } = dockerfileOf(first)
  const configFile = contextFileAt(stages.find((stage) => stage.name === 'gateway')!, context, shared.GATEWAY_CONFIG!)
  t.ok(configFile && existsSync(configFile), `${shared.GATEWAY_CONFIG} is copied into the image`)
  for (const [name, env] of gateways.map(([name], i) => [name, environments[i]!] as const)) {
    const config = parseConfigText(readFileSync(configFile!, 'utf8'), env, configFile!)
    t.equal(config.redis.url, shared.REDIS_URL, `${name} starts with a valid configuration, on Redis`)
    t.equal(config.publicUrl, shared.GATEWAY_PUBLIC_URL)
    t.equal(config.server.trustProxy, 1, `${name} believes the one proxy in front, so rate limits count clients, not the load balancer`)
  }
})

t.test('the gateway image: OCI labels, and node as PID 1 with no init process (the gateway handles SIGTERM)', async (t) => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ')
  const gateway = text.slice(text.indexOf('AS gateway'))
  const labels = Object.fromEntries(
    [...gateway.matchAll(/^LABEL\s+(.+)$/gm)].flatMap(([, pairs]) => [...pairs!.matchAll(/([\w.-]+)="([^"]*)"/g)].map(([, key, value]) => [key!, value!])),
  )
  for (const key of ['title', 'description', 'version', 'revision', 'base.name']) t.ok(labels[`org.opencontainers.image.${key}`], `org.opencontainers.image.${key}`)
  const args = Object.fromEntries([...gateway.matchAll(/^ARG\s+(\w+)=(\S*)$/gm)].map(([, name, value]) => [name!, value!]))
  t.match(labels['org.opencontainers.image.version'], /^\$\{VERSION\}$/, 'the version comes from the build argument')
  t.match(args.VERSION, /^\d+\.\d+\.\d+$/, 'VERSION has a default')
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  t.equal(args.VERSION, manifest.version, 'the default is package.json\'s version')
  t.notMatch(gateway, /^ENTRYPOINT/m, 'no entrypoint wraps node')
  t.notMatch(text, /\b(tini|dumb-init)\b|--init\b/, 'no init process')
  t.match(gateway, /^CMD \["node", "gateway\/server\.ts"\]$/m, 'node runs the gateway directly, as PID 1')
  t.match(readFileSync(join(ROOT, 'gateway/server.ts'), 'utf8'), /for \(const signal of \['SIGTERM', 'SIGINT'\] as const\)/, 'which handles SIGTERM itself')
})
