/**
 * deploy/kubernetes without a cluster (none runs here): kustomize builds the
 * base and the production overlay (`kubectl kustomize`, which works offline;
 * kubectl's own validation needs an API server, so it is not used), and every
 * object is checked against the Kubernetes OpenAPI schemas that the
 * kubernetes-models package carries, twice: its JSON-schema validator (types,
 * required fields, formats) and its TypeScript types, whose excess property
 * check finds unknown or misspelled fields, which the OpenAPI schemas allow
 * but `kubectl apply --validate=strict` refuses. Then what the gateway needs
 * of the objects: the probes, the shutdown timing against the configuration
 * in the ConfigMap, the ConfigMap mounted as a directory where GATEWAY_CONFIG
 * points, the secrets the gateway reads, the NetworkPolicy's few ways out.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'
import { parseAllDocuments, parse } from 'yaml'
import { parseConfigText } from '../../gateway/config/load.ts'
import { PATHS } from '../../gateway/context.ts'
import { PROMETHEUS_RULE_FILE, renderPrometheusRule } from '../../scripts/prometheus-rule.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)

type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [key: string]: any }

async function build(dir: string): Promise<K8sObject[]> {
  const { stdout } = await run('kubectl', ['kustomize', dir], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 })
  return parseAllDocuments(stdout).map((document) => document.toJS() as K8sObject)
}

const { stdout: version } = await run('kubectl', ['version', '--client'])
t.comment(version.trim().replace(/\n/g, '; '))
const base = await build('deploy/kubernetes')
const production = await build('deploy/kubernetes/overlays/production')
const monitoring = await build('deploy/kubernetes/monitoring')
const builds = { base, production, monitoring }

const one = (objects: K8sObject[], kind: string, name = 'oauth-gateway') => {
  const found = objects.find((object) => object.kind === kind && object.metadata.name === name)
  if (!found) throw new Error(`no ${kind} ${name}`)
  return found
}

/** The model of an object: kubernetes-models/<apiVersion>/<Kind>, or the Prometheus Operator's. */
const modelPath = (object: K8sObject) =>
  object.apiVersion.startsWith('monitoring.coreos.com/') ? `@kubernetes-models/prometheus-operator/${object.apiVersion}/${object.kind}` : `kubernetes-models/${object.apiVersion}/${object.kind}`

t.test('kustomize builds the base and the production overlay', async (t) => {
  t.same(base.map((object) => object.kind).sort(), ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Namespace', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount'])
  t.same(production.map((object) => object.kind).sort(), [...base.map((object) => object.kind), 'Ingress'].sort(), 'the overlay adds the Ingress')
  for (const object of [...base, ...production]) {
    if (object.kind !== 'Namespace') t.equal(object.metadata.namespace, 'oauth-gateway', `${object.kind} ${object.metadata.name} in the namespace`)
    t.equal(object.metadata.labels?.['app.kubernetes.io/name'], 'oauth-gateway', `${object.kind} ${object.metadata.name} labelled`)
  }
  t.notOk(base.some((object) => object.kind === 'Secret'), 'no Secret is shipped: ops create it')
})

t.test('every object matches the Kubernetes OpenAPI schema (kubernetes-models)', async (t) => {
  for (const [name, objects] of Object.entries(builds)) {
    for (const object of objects) {
      const module = (await import(modelPath(object))) as Record<string, new (data: unknown) => { validate(): void }>
      const Model = module[object.kind]!
      t.doesNotThrow(() => new Model(object).validate(), `${name}: ${object.kind} ${object.metadata.name}`)
    }
  }
  // The validator can fail: a wrong type and a missing required field.
  const { Deployment } = await import('kubernetes-models/apps/v1/Deployment')
  const deployment = structuredClone(one(base, 'Deployment'))
  deployment.spec.replicas = 'two'
  t.throws(() => new Deployment(deployment as never).validate(), /replicas must be integer/)
  delete deployment.spec.selector
  deployment.spec.replicas = 2
  t.throws(() => new Deployment(deployment as never).validate(), /selector/)
})

/** TypeScript diagnostics of `objects` written as literals of their kubernetes-models types. */
function unknownFields(objects: K8sObject[]): string[] {
  const file = join(ROOT, 'test/deploy/__rendered_manifests__.ts')
  const interfaceOf = (object: K8sObject) => `I${object.kind}`
  const source = [
    ...objects.map((object, i) => `import type { ${interfaceOf(object)} as T${i} } from '${modelPath(object)}'`),
    ...objects.map((object, i) => `export const object${i}: T${i} = ${JSON.stringify(object, null, 1)}`),
  ].join('\n')
  const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true, types: [] }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest))
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((diagnostic) => {
    const where = diagnostic.file && diagnostic.start !== undefined ? diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start) : undefined
    const line = where ? source.split('\n')[where.line]?.trim() : ''
    return `${ts.flattenDiagnosticMessageText(diagnostic.messageText, ' ')} at ${line}`
  })
}

t.test('no object has a field the Kubernetes API does not know (as kubectl --validate=strict)', async (t) => {
  t.same(unknownFields([...base, ...production, ...monitoring]), [], 'base, production and monitoring: no unknown field')
  // The check can fail: a misspelled field deep in the pod template.
  const deployment = structuredClone(one(base, 'Deployment'))
  deployment.spec.template.spec.containers[0].readinesProbe = deployment.spec.template.spec.containers[0].readinessProbe
  const found = unknownFields([deployment])
  t.equal(found.length, 1, 'one problem found')
  t.match(found[0], /readinesProbe/)
})

const deployment = one(base, 'Deployment')
const pod = deployment.spec.template.spec
const container = pod.containers.find((candidate: any) => candidate.name === 'gateway')
const envOf = (name: string) => container.env.find((entry: any) => entry.name === name)
const configMap = one(base, 'ConfigMap', 'oauth-gateway-config')

t.test('the Deployment: two non-root replicas, read-only, no capabilities, bounded resources', async (t) => {
  t.equal(deployment.spec.replicas, 2)
  t.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0, 'a rollout never drops below two')
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.ok(pod.securityContext.runAsUser > 0, 'a non-root uid')
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault')
  t.equal(pod.automountServiceAccountToken, false, 'no API token in the pod')
  t.equal(container.securityContext.readOnlyRootFilesystem, true)
  t.equal(container.securityContext.allowPrivilegeEscalation, false)
  t.same(container.securityContext.capabilities.drop, ['ALL'])
  for (const kind of ['requests', 'limits']) for (const resource of ['cpu', 'memory']) t.ok(container.resources[kind][resource], `${kind}.${resource}`)
  t.match(container.image, /^ghcr\.io\/neonpanel\/oauth-gateway:\d+\.\d+\.\d+$/, 'a versioned image, not latest')
  const writable = container.volumeMounts.filter((mount: any) => !mount.readOnly).map((mount: any) => pod.volumes.find((volume: any) => volume.name === mount.name))
  t.ok(writable.length > 0 && writable.every((volume: any) => volume.emptyDir), 'what is writable is an emptyDir')
  const statePath = envOf('GATEWAY_STATE_PATH')?.value
  t.ok(container.volumeMounts.some((mount: any) => !mount.readOnly && dirname(statePath) === mount.mountPath), `the state file ${statePath} is on a writable volume`)
})

t.test('probes: readiness /readyz, liveness /healthz, on the container port', async (t) => {
  const port = container.ports.find((candidate: any) => candidate.name === 'http')
  t.equal(port.containerPort, 8080)
  t.equal(container.readinessProbe.httpGet.path, '/readyz')
  t.equal(container.livenessProbe.httpGet.path, '/healthz')
  for (const probe of [container.readinessProbe, container.livenessProbe]) t.equal(probe.httpGet.port, 'http')
  // The routes exist: the probes would otherwise fail forever.
  const health = readFileSync(join(ROOT, 'gateway/routes/health.ts'), 'utf8')
  t.match(health, /app\.get\('\/readyz'/)
  t.match(health, /app\.get\('\/healthz'/)
})

t.test('the ConfigMap holds a valid gateway.yaml, mounted as a directory where GATEWAY_CONFIG points', async (t) => {
  const path = envOf('GATEWAY_CONFIG').value as string
  const volume = pod.volumes.find((candidate: any) => candidate.configMap?.name === configMap.metadata.name)
  t.ok(volume, 'the ConfigMap is a volume of the pod')
  const mount = container.volumeMounts.find((candidate: any) => candidate.name === volume.name)
  t.equal(mount.mountPath, dirname(path), 'GATEWAY_CONFIG is in the mounted directory')
  t.notOk(mount.subPath, 'no subPath: a subPath mount never sees the ConfigMap change')
  t.ok(configMap.data[basename(path)], `the ConfigMap has ${basename(path)}`)
  t.notMatch(configMap.metadata.name, /-[a-z0-9]{10}$/, 'a fixed name (no hash suffix), so an edit updates the mounted file instead of restarting the pods')
  // The gateway watches the file's directory and the ConfigMap's ..data swaps (reload.ts).
  t.match(readFileSync(join(ROOT, 'gateway/config/reload.ts'), 'utf8'), /watch\(dirname\(path\)/)
  t.match(readFileSync(join(ROOT, 'gateway/config/reload.ts'), 'utf8'), /name\.startsWith\('\.\.'\)/)

  const env = { ...plainEnv(), GATEWAY_SECRET: 'k'.repeat(40), UPSTREAM_CLIENT_SECRET: 'secret', REDIS_URL: 'redis://redis:6379' }
  const config = parseConfigText(configMap.data[basename(path)], env, 'the ConfigMap')
  t.equal(config.publicUrl, 'https://oauth.neonpanel.com')
  t.equal(config.server.trustProxy, 1, 'behind the ingress controller, one trusted proxy')
  t.equal(config.port, container.ports[0].containerPort, 'listens on the container port')
  t.equal(config.metrics.enabled, true, 'Prometheus can scrape')
})

function plainEnv(): Record<string, string> {
  return Object.fromEntries(container.env.filter((entry: any) => entry.value !== undefined).map((entry: any) => [entry.name, entry.value]))
}

t.test('shutdown: preStop pause and server.shutdownTimeoutMs end within terminationGracePeriodSeconds', async (t) => {
  const command = container.lifecycle.preStop.exec.command as string[]
  t.equal(command[0], 'sleep')
  const pause = Number(command[1])
  t.ok(pause >= 3, `a ${pause} s pause, so the endpoints are updated before SIGTERM`)
  const config = parseConfigText(configMap.data['gateway.yaml'], { ...plainEnv(), GATEWAY_SECRET: 'k'.repeat(40), UPSTREAM_CLIENT_SECRET: 's' }, 'the ConfigMap')
  const needed = pause + config.server.shutdownTimeoutMs / 1000
  t.ok(pod.terminationGracePeriodSeconds > needed, `${pod.terminationGracePeriodSeconds} s > ${pause} s + ${config.server.shutdownTimeoutMs} ms`)
  // server.ts handles SIGTERM itself: no init process in the image.
  t.match(readFileSync(join(ROOT, 'gateway/server.ts'), 'utf8'), /\['SIGTERM', 'SIGINT'\]/)
})

/** Environment variables the gateway reads today. */
function variablesRead(): Set<string> {
  const sources = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((entry) => entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [])
  const read = new Set<string>()
  for (const file of sources(join(ROOT, 'gateway'))) for (const [, name] of readFileSync(file, 'utf8').matchAll(/env\.([A-Z][A-Z0-9_]+)/g)) read.add(name!)
  return read
}
/** Variables other parts of the gateway are adding (Redis Sentinel and Cluster, the admin API, the state file): set, optional, until they land. */
const ANNOUNCED = new Set(['ADMIN_TOKEN', 'GATEWAY_STATE_PATH', 'REDIS_SENTINELS', 'REDIS_SENTINEL_MASTER', 'REDIS_SENTINEL_PASSWORD', 'REDIS_CLUSTER_NODES', 'REDIS_USERNAME', 'REDIS_PASSWORD', 'REDIS_TLS'])

t.test('the secrets come from the Secret oauth-gateway, under the names the gateway reads', async (t) => {
  const read = variablesRead()
  t.ok(read.has('GATEWAY_SECRET') && read.has('REDIS_URL'), 'the scan finds what load.ts reads')
  const fromSecret = container.env.filter((entry: any) => entry.valueFrom?.secretKeyRef)
  for (const entry of container.env) {
    t.ok(read.has(entry.name) || ANNOUNCED.has(entry.name), `${entry.name} is read by the gateway${ANNOUNCED.has(entry.name) ? ' (announced)' : ''}`)
    if (entry.valueFrom) t.equal(entry.valueFrom.secretKeyRef?.name, 'oauth-gateway', `${entry.name} from the Secret`)
  }
  const required = fromSecret.filter((entry: any) => !entry.valueFrom.secretKeyRef.optional).map((entry: any) => entry.name).sort()
  t.same(required, ['GATEWAY_SECRET', 'UPSTREAM_CLIENT_SECRET'], 'only what the gateway cannot start without is required')
  for (const name of ['METRICS_TOKEN', 'REDIS_URL', 'ADMIN_TOKEN', 'REDIS_SENTINELS', 'REDIS_CLUSTER_NODES']) t.ok(envOf(name)?.valueFrom?.secretKeyRef, `${name} can be set from the Secret`)
  for (const entry of fromSecret) t.equal(entry.valueFrom.secretKeyRef.key, entry.name, `${entry.name}: the key is the variable's name`)
  const example = readFileSync(join(ROOT, 'deploy/kubernetes/base/secret.example.env'), 'utf8')
  for (const entry of fromSecret) t.match(example, new RegExp(`^#? ?${entry.name}=|${entry.name}`, 'm'), `secret.example.env names ${entry.name}`)
  t.notOk(Object.values(configMap.data as Record<string, string>).some((text) => /GATEWAY_SECRET|clientSecret|password/i.test(text.replace(/^\s*#.*$/gm, ''))), 'no secret in the ConfigMap')
})

t.test('Service, PodDisruptionBudget and HorizontalPodAutoscaler select the gateway pods', async (t) => {
  const labels = deployment.spec.template.metadata.labels as Record<string, string>
  const selects = (selector: Record<string, string>) => Object.entries(selector).every(([key, value]) => labels[key] === value)
  t.ok(selects(deployment.spec.selector.matchLabels), 'the Deployment selects its own pods')
  for (const name of ['oauth-gateway', 'oauth-gateway-pods']) {
    const service = one(base, 'Service', name)
    t.ok(selects(service.spec.selector), `Service ${name} selects the pods`)
    t.equal(service.spec.ports[0].targetPort, 'http')
  }
  t.equal(one(base, 'Service', 'oauth-gateway-pods').spec.publishNotReadyAddresses, true, 'Prometheus sees unready pods too')
  const pdb = one(base, 'PodDisruptionBudget')
  t.ok(selects(pdb.spec.selector.matchLabels), 'the PDB selects the pods')
  t.ok(pdb.spec.minAvailable >= 1 && pdb.spec.minAvailable < deployment.spec.replicas, 'a drain can proceed, one replica at a time')
  const hpa = one(base, 'HorizontalPodAutoscaler')
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name })
  t.equal(hpa.spec.minReplicas, deployment.spec.replicas, 'never fewer than two')
  t.ok(container.resources.requests.cpu, 'CPU utilisation needs a CPU request')
  // The alert for too few ready replicas counts the same two.
  t.match(readFileSync(join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'), new RegExp(`ready_replicas:count\\{job="oauth-gateway"\\} < ${hpa.spec.minReplicas}`))
})

t.test('the NetworkPolicy: out only to DNS, Redis and HTTPS on public addresses', async (t) => {
  const policy = one(base, 'NetworkPolicy')
  t.same(policy.spec.policyTypes, ['Ingress', 'Egress'])
  t.ok(Object.entries(policy.spec.podSelector.matchLabels).every(([key, value]) => deployment.spec.template.metadata.labels[key] === value), 'applies to the gateway pods')
  const ports = policy.spec.egress.flatMap((rule: any) => rule.ports.map((port: any) => `${port.port}/${port.protocol}`)).sort()
  t.same(ports, ['26379/TCP', '443/TCP', '53/TCP', '53/UDP', '6379/TCP'])
  for (const rule of policy.spec.egress) t.ok(rule.to?.length, 'every egress rule names where to (none would mean anywhere)')
  const https = policy.spec.egress.find((rule: any) => rule.ports.some((port: any) => port.port === 443))
  const v4 = https.to.find((peer: any) => peer.ipBlock?.cidr === '0.0.0.0/0')
  for (const range of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16']) t.ok(v4.ipBlock.except.includes(range), `not to ${range}`)
  t.same(policy.spec.ingress.map((rule: any) => rule.ports.map((port: any) => port.port)), [['http']], 'in only on the gateway port')
})

t.test('the production Ingress routes the public endpoints and keeps /metrics, /healthz and /readyz inside', async (t) => {
  const ingress = one(production, 'Ingress')
  const paths = ingress.spec.rules.flatMap((rule: any) => rule.http.paths) as Array<{ path: string; pathType: string; backend: any }>
  const routes = (path: string) => paths.some((entry) => (entry.pathType === 'Exact' ? entry.path === path : path.startsWith(entry.path)))
  for (const path of Object.values(PATHS)) t.ok(routes(path), `${path} is routed`)
  for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/oauth-protected-resource/mcp', '/.well-known/openid-configuration']) t.ok(routes(path), `${path} is routed`)
  for (const path of ['/metrics', '/healthz', '/readyz']) t.notOk(routes(path), `${path} is not routed`)
  for (const entry of paths) t.equal(entry.backend.service.name, 'oauth-gateway')
  t.equal(ingress.spec.rules[0].host, new URL(parse(configMap.data['gateway.yaml']).publicUrl).host, 'the host is the configured publicUrl')
})

t.test('the Prometheus Operator kit: a PodMonitor for job oauth-gateway and the rules as a PrometheusRule', async (t) => {
  t.same(monitoring.map((object) => object.kind).sort(), ['PodMonitor', 'PrometheusRule'])
  t.equal(readFileSync(join(ROOT, PROMETHEUS_RULE_FILE), 'utf8'), renderPrometheusRule(), `${PROMETHEUS_RULE_FILE} is up to date (npm run deploy:rules)`)
  const rule = one(monitoring, 'PrometheusRule')
  const files = ['rules.yml', 'alerts.yml'].flatMap((file) => (parse(readFileSync(join(ROOT, 'deploy/prometheus', file), 'utf8')) as { groups: unknown[] }).groups)
  t.same(rule.spec.groups, files, 'the groups of rules.yml and alerts.yml')
  const monitor = one(monitoring, 'PodMonitor')
  t.ok(Object.entries(monitor.spec.selector.matchLabels).every(([key, value]) => deployment.spec.template.metadata.labels[key] === value), 'selects the gateway pods')
  const [endpoint] = monitor.spec.podMetricsEndpoints
  t.equal(endpoint.port, container.ports[0].name, 'on the gateway port')
  t.equal(endpoint.path, '/metrics')
  t.same(endpoint.authorization.credentials, { name: 'oauth-gateway', key: 'METRICS_TOKEN' }, 'with the Secret\'s METRICS_TOKEN')
  t.ok(endpoint.relabelings.some((relabel: any) => relabel.targetLabel === 'job' && relabel.replacement === 'oauth-gateway'), 'as job oauth-gateway, which the alerts name')
  t.equal(monitor.metadata.namespace, deployment.metadata.namespace, 'beside the Secret it reads')
})
