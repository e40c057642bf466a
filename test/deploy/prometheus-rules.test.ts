/**
 * The Prometheus files of deploy/prometheus/, checked by Prometheus's own
 * tool: the rules and alerts parse and their expressions are valid PromQL
 * (`promtool check rules`); every alert fires on a synthetic series of the
 * trouble it names and stays quiet on a healthy one (`promtool test rules`
 * runs alerts.test.yml); the example scrape configuration is valid
 * (`promtool check config --syntax-only`: its token file exists only where
 * Prometheus runs). Debian's `prometheus` package brings promtool (.ci/run
 * installs it).
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse } from 'yaml'

const DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url))
const run = promisify(execFile)

async function promtool(...args: string[]) {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: DIR })
    return { ok: true, output: stdout + stderr }
  } catch (err) {
    const failed = err as { stdout?: string; stderr?: string; message: string }
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` || failed.message }
  }
}

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ record?: string; alert?: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }>
}
const rulesOf = (file: string) => (parse(readFileSync(join(DIR, file), 'utf8')) as RuleFile).groups.flatMap((group) => group.rules)

t.test('promtool check rules: the recording rules and alerts are valid', async (t) => {
  const checked = await promtool('check', 'rules', 'rules.yml', 'alerts.yml')
  t.ok(checked.ok, checked.output)
  t.match(checked.output, /SUCCESS: \d+ rules found/)
})

t.test('promtool test rules: every alert fires on its trouble and stays quiet when healthy', async (t) => {
  const tested = await promtool('test', 'rules', 'alerts.test.yml')
  t.ok(tested.ok, tested.output)
  t.match(tested.output, /SUCCESS/)
  // Every alert is exercised both ways in the unit tests.
  const tests = (parse(readFileSync(join(DIR, 'alerts.test.yml'), 'utf8')) as {
    tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts?: unknown[] }> }>
  }).tests.flatMap((test) => test.alert_rule_test)
  for (const { alert } of rulesOf('alerts.yml')) {
    t.ok(tests.some((test) => test.alertname === alert && (test.exp_alerts?.length ?? 0) > 0), `${alert} fires in a test`)
    t.ok(tests.some((test) => test.alertname === alert && (test.exp_alerts?.length ?? 0) === 0), `${alert} stays quiet in a test`)
  }
})

t.test('every alert has a severity and a runbook section', async (t) => {
  const runbook = readFileSync(fileURLToPath(new URL('../../docs/runbook.md', import.meta.url)), 'utf8')
  // GitHub's anchors: the heading in lower case.
  const anchors = new Set([...runbook.matchAll(/^#{2,3} (.+)$/gm)].map(([, heading]) => heading!.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')))
  for (const rule of rulesOf('alerts.yml')) {
    t.match(rule.labels?.severity, /^(critical|warning)$/, `${rule.alert}: severity`)
    t.ok(rule.annotations?.summary && rule.annotations.description, `${rule.alert}: summary and description`)
    const anchor = rule.annotations?.runbook_url?.split('#')[1]
    t.equal(anchor, rule.alert!.toLowerCase(), `${rule.alert}: its runbook link`)
    t.ok(anchors.has(anchor!), `${rule.alert}: docs/runbook.md has a section #${anchor}`)
  }
})

t.test('promtool check config: the example scrape configuration is valid', async (t) => {
  const checked = await promtool('check', 'config', '--syntax-only', 'prometheus.yml')
  t.ok(checked.ok, checked.output)
  const config = parse(readFileSync(join(DIR, 'prometheus.yml'), 'utf8')) as { rule_files: string[]; scrape_configs: Array<{ job_name: string }> }
  t.same(config.rule_files, ['rules.yml', 'alerts.yml'], 'loads both rule files')
  t.ok(config.scrape_configs.some((job) => job.job_name === 'oauth-gateway'), 'the job the alerts name')
})
