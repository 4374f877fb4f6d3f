// The bench scripts run end to end (tiny counts): every workload × target row is there with
// numbers. Not a performance test: nothing here checks that anything is fast.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { chartSvg } from '../bench/chart.js'
import { TARGETS, WORKLOADS, type Row } from '../bench/run.js'

t.test('npm run bench --quick runs every workload against every target', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-bench-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, 'quick.json')
  const child = spawn(process.execPath, [...process.execArgv, 'bench/run.ts', '--quick', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 180_000)
  const [code] = await once(child, 'exit') as [number | null]
  clearTimeout(timer)
  t.equal(code, 0, 'bench exits 0', { stderr })

  t.match(stdout, /^svcproxy bench \(quick\) — .+ cores, node v\d+/m, 'machine line')
  t.match(stdout, /CPU ×naive +CPU ×nginx/, 'one table with the ratio columns')

  const json = JSON.parse(readFileSync(out, 'utf8')) as { date: string, mode: string, machine: Record<string, unknown>, rows: Row[] }
  // The chart docs/performance.md embeds, drawn from this run: one bar per proxy in each panel.
  const svg = chartSvg(json)
  t.match(svg, /^<svg [^>]+>[\s\S]*<\/svg>\n$/, 'chart: one svg element')
  for (const target of ['naive', 'svcproxy', 'nginx', 'haproxy']) t.equal(svg.split(`>${target}</text>`).length - 1, 6, `chart: ${target} in each of the 6 panels`)
  t.equal(json.mode, 'quick')
  t.type(json.machine.cores, 'number')
  t.equal(json.rows.length, WORKLOADS.length * TARGETS.length, 'one row per workload × target')
  const num = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x)
  for (const w of WORKLOADS) {
    for (const target of TARGETS) {
      const r = json.rows.find((x) => x.workload === w && x.target === target)
      if (r === undefined) { t.fail(`row ${w}/${target} missing`); continue }
      const where = `${w}/${target}`
      if (r.status === 'n/a') {
        // HAProxy has no UDP; nginx and HAProxy must be installed here (.ci/run installs them):
        // the bench runs without them, this test does not.
        t.ok(target === 'haproxy' && w === 'udp', `${where}: only HAProxy's UDP row may be n/a (${r.note ?? ''})`)
        t.match(r.note, /not served/, `${where}: n/a with a reason`)
        continue
      }
      t.ok(num(r.rate) && (r.rate as number) > 0, `${where}: rate`)
      t.ok(num(r.count) && (r.count as number) > 0, `${where}: count`)
      t.equal(r.errors, 0, `${where}: no errors`)
      if (w !== 'bulk') t.ok(num(r.p50Ms) && num(r.p99Ms), `${where}: p50/p99`)
      if (target === 'direct') t.equal(r.cpuPerUnit, null, `${where}: no proxy CPU`)
      else t.ok(num(r.cpuPerUnit) && (r.cpuPerUnit as number) > 0, `${where}: proxy CPU per unit`)
      if (target === 'svcproxy') {
        t.ok(num(r.ratio), `${where}: ratio to naive`)
        if (w === 'latency') t.ok(num(r.addedP50TargetUs), `${where}: added-latency target`)
        else t.ok(num(r.ratioTarget) && num(r.ratioNginxTarget), `${where}: ratio targets`)
      }
      if (target !== 'direct' && target !== 'nginx') t.ok(num(r.ratioNginx), `${where}: ratio to nginx`)
      if (target !== 'direct' && (w === 'latency' || w === 'http-close' || w === 'udp')) t.ok(num(r.addedP50Us) && num(r.addedP99Us), `${where}: added latency`)
    }
  }
})
