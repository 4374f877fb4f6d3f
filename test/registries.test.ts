// Registries that leave the process (error codes, metric families, CLI flags, close and drop
// reasons) are declared once in code and listed in docs/. Each test compares both lists both
// ways, so adding, renaming or removing an entry on one side only fails here. Socket-free.
import { readdirSync, readFileSync } from 'node:fs'
import t from 'tap'
import { type MetricsInput, renderMetrics } from '../lib/admin/collect.js'
import { METRIC_FAMILIES } from '../lib/admin/families.js'
import { ProcessStats } from '../lib/admin/process-stats.js'
import { COMMANDS, FLAGS, helpText } from '../lib/cli/flags.js'
import * as errors from '../lib/errors.js'
import { CLOSE_REASONS, DROP_REASONS } from '../lib/frontend/reasons.js'
import { Histogram } from '../lib/util/histogram.js'
import { parseExposition } from './exposition.js'

const root = new URL('..', import.meta.url)
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8')

/** Fails with the names missing on each side (an empty list each when the sets agree). */
function sameSet (t: { same: (found: unknown, wanted: unknown, message: string) => unknown }, docs: Iterable<string>, code: Iterable<string>, what: string): void {
  const d = new Set(docs)
  const c = new Set(code)
  t.same([...c].filter((x) => !d.has(x)), [], `${what}: every entry in code is documented`)
  t.same([...d].filter((x) => !c.has(x)), [], `${what}: every documented entry exists in code`)
}

/** The text under `heading` (a whole line, e.g. `## Metrics`) up to the next heading of its level or above. */
function section (text: string, heading: string): string {
  const lines = text.split('\n')
  const start = lines.indexOf(heading)
  if (start < 0) throw new Error(`heading not found: ${heading}`)
  const level = /^#+/.exec(heading)?.[0].length ?? 1
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && (/^#+/.exec(l)?.[0].length ?? 0) <= level)
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n')
}

/** Body rows of the markdown tables in `text`, cells trimmed (header and separator rows skipped). */
function rows (text: string): string[][] {
  const out: string[][] = []
  const lines = text.split('\n')
  lines.forEach((l, i) => {
    if (!l.startsWith('|') || /^\|[-| :]+\|$/.test(l) || /^\|[-| :]+\|$/.test(lines[i + 1] ?? '')) return
    out.push(l.slice(1, l.endsWith('|') ? -1 : undefined).split('|').map((c) => c.trim()))
  })
  return out
}

/** `name` from a cell that starts with `` `name` ``; null otherwise. */
function ticked (cell: string | undefined): string | null {
  return /^`([^`]+)`/.exec(cell ?? '')?.[1] ?? null
}

/** The first column of every table row in `text` that starts with a ticked name. */
function tickedKeys (text: string): string[] {
  return rows(text).map((r) => ticked(r[0])).filter((k): k is string => k !== null)
}

t.test('errors: every code in ERROR_CODES is in docs/errors.md with its class, and back', async (t) => {
  const table = rows(read('docs/errors.md')).filter((r) => ticked(r[0])?.startsWith('SVCPROXY_') === true)
  sameSet(t, table.map((r) => ticked(r[0]) ?? ''), Object.keys(errors.ERROR_CODES), 'error codes')
  for (const r of table) {
    const code = ticked(r[0]) ?? ''
    const entry = (errors.ERROR_CODES as Record<string, { class: string } | undefined>)[code]
    if (entry !== undefined) t.equal(ticked(r[1]), entry.class, `${code}: the class docs name`)
    t.ok((r[2] ?? '') !== '' && (r[3] ?? '') !== '', `${code}: says what happened and what to do`)
  }
})

t.test('errors: every error class is in lib/errors.ts and named in ERROR_CODES', async (t) => {
  const exported = Object.entries(errors)
    .filter(([, v]) => typeof v === 'function' && v.prototype instanceof errors.SvcproxyError)
    .map(([k]) => k)
  sameSet(t, Object.values(errors.ERROR_CODES).map((e) => e.class), exported, 'SvcproxyError subclasses exported by lib/errors.ts')

  // Elsewhere in lib/: no error class, and no code the table does not know (casts escape the types).
  const libDir = new URL('lib/', root)
  const files = (readdirSync(libDir, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && f !== 'errors.ts')
  t.ok(files.length > 30, `scanned ${files.length} lib files`)
  const elsewhere: string[] = []
  const unknown: string[] = []
  for (const f of files) {
    const src = readFileSync(new URL(f, libDir), 'utf8')
    for (const m of src.matchAll(/class (\w+) extends (\w*Error)\b/g)) elsewhere.push(`${f}: ${m[1] ?? ''}`)
    for (const m of src.matchAll(/'(SVCPROXY_[A-Z_]+)'/g)) if (!((m[1] ?? '') in errors.ERROR_CODES)) unknown.push(`${f}: ${m[1] ?? ''}`)
  }
  t.same(elsewhere, [], 'no error class outside lib/errors.ts')
  t.same(unknown, [], 'no SVCPROXY_ code outside ERROR_CODES')
})

function observed (v: number): Histogram {
  const h = new Histogram([0.001, 1])
  h.observe(v)
  return h
}

/** A service port with one endpoint, shaped as renderMetrics reads it: every family has a series. */
function fakeMetricsInput (): MetricsInput {
  const endpoint = { key: '10.0.0.1:80', ready: true, accepted: 1, active: 1, dialFailures: 0, affinityHits: 0, bytesUp: 0, bytesDown: 0, udpDatagramsUp: 0, udpDatagramsDown: 0 }
  const rt = {
    id: 'default/web:http', namespace: 'default', service: 'web', portLabel: 'http',
    accepted: 1, active: 1, dialFailures: 0, dialRetries: 0, rejectedLimit: 0, noEndpoints: 0, udpSessionsActive: 0,
    sourceRangeDenied: 0, udpDrops: 0, bytesUp: 0, bytesDown: 0, udpDatagramsUp: 0, udpDatagramsDown: 0, selfLoopEndpoints: 0,
    dialDuration: observed(0.001), connectionDuration: observed(0.5),
    faults: { activeByType: () => new Map([['latency', 1]]) },
    faultCounts: { applied: new Map([['latency', 1]]), bytes: new Map([['latency', 10]]), datagrams: new Map([['loss', 1]]) },
    balancer: { affinityEntries: 0, endpoints: [endpoint] },
    endpoints: [endpoint], ejectionsTotal: 0, checksPassed: 0, checksFailed: 0,
  }
  const proxy = {
    dataplane: { runtimes: new Map([[rt.id, rt]]), frontends: new Map([['f', { state: 'listening' }]]), inError: 0, bindFailures: 0 },
    syncStats: { duration: new Histogram([0.001, 0.002]), lastSyncAt: 0, errors: 0 },
    table: { revision: 1 },
    limits: { acceptErrors: 0 },
  }
  return {
    proxy: proxy as unknown as MetricsInput['proxy'],
    health: () => ({ kind: 'file', synced: true, stale: false, reason: '', lastSyncedAt: 0, revision: 1 }),
    process: new ProcessStats(),
  }
}

t.test('metrics: a scrape declares exactly METRIC_FAMILIES, with their types, help and labels', async (t) => {
  const input = fakeMetricsInput()
  t.teardown(() => input.process.close())
  const scrape = parseExposition(await renderMetrics(input))
  const table = Object.entries(METRIC_FAMILIES)
  // These need /proc/self.
  const linuxOnly = ['svcproxy_open_fds', 'process_open_fds', 'process_max_fds', 'process_virtual_memory_bytes']
  const expected = table.filter(([name]) => process.platform === 'linux' || !linuxOnly.includes(name))
  sameSet(t, expected.map(([n]) => n), scrape.types.keys(), 'families in a scrape vs METRIC_FAMILIES')
  const labelSets = new Map<string, Set<string>>()
  for (const s of scrape.samples) {
    const family = scrape.types.has(s.name) ? s.name : s.name.replace(/_(bucket|sum|count)$/, '')
    const set = labelSets.get(family) ?? new Set<string>()
    set.add(Object.keys(s.labels).filter((k) => k !== 'le').join(','))
    labelSets.set(family, set)
  }
  for (const [name, f] of expected) {
    t.equal(scrape.types.get(name), f.type, `${name}: type`)
    t.equal(scrape.help.get(name), f.help, `${name}: help`)
    t.same([...(labelSets.get(name) ?? [])], [f.labels.join(',')], `${name}: labels`)
  }
})

t.test('metrics: docs/operations.md lists every family with its type and labels, and no other', async (t) => {
  const docs = rows(section(read('docs/operations.md'), '## Metrics')).filter((r) => /^(svcproxy|process)_/.test(ticked(r[0]) ?? ''))
  t.equal(docs.length, Object.keys(METRIC_FAMILIES).length, `${docs.length} families documented`)
  sameSet(t, docs.map((r) => ticked(r[0]) ?? ''), Object.keys(METRIC_FAMILIES), 'metric families')
  for (const r of docs) {
    const name = ticked(r[0]) ?? ''
    const f = (METRIC_FAMILIES as Record<string, { type: string, labels: readonly string[] } | undefined>)[name]
    if (f === undefined) continue
    t.equal(r[1], f.type, `${name}: type`)
    // "ns, service, port, direction", "quantile (`0.5`, ...)" or "–" for none.
    const labels = (r[2] ?? '') === '–' ? [] : (r[2] ?? '').split(',').map((l) => /^\s*([a-z_]+)/.exec(l)?.[1]).filter((l) => l !== undefined).map((l) => (l === 'ns' ? 'namespace' : l))
    t.same(labels, [...f.labels], `${name}: labels`)
  }
})

/** The indented code block that starts at or after line `from`: its lines without the indent. */
function codeBlock (lines: string[], from: number): string[] {
  let i = lines.findIndex((l, j) => j >= from && l.startsWith('    '))
  const out: string[] = []
  // Blank lines belong to the block when it goes on after them (editors may strip the indent).
  while (i >= 0 && i < lines.length && (lines[i]?.startsWith('    ') === true || (lines[i]?.trim() === '' && lines[i + 1]?.startsWith('    ') === true))) {
    out.push((lines[i] ?? '').slice(4).trimEnd())
    i++
  }
  return out
}

t.test('cli: docs/cli.md holds the --help of every command, as generated from lib/cli/flags.ts', async (t) => {
  const lines = read('docs/cli.md').split('\n')
  const trimmed = (text: string): string[] => text.split('\n').map((l) => l.trimEnd())
  const fix = 'paste the output of `svcproxy <command> --help` into docs/cli.md, indented 4 spaces'
  t.same(codeBlock(lines, 0), trimmed(helpText()), `top-level help (${fix})`)
  const sections = new Map<string, string[]>()
  lines.forEach((l, i) => {
    const m = /^## svcproxy (\S+)$/.exec(l)
    if (m !== null) sections.set(m[1] ?? '', codeBlock(lines, i + 1))
  })
  sameSet(t, sections.keys(), Object.keys(COMMANDS).filter((c) => c !== 'help'), 'commands with a "## svcproxy <command>" section')
  for (const [command, block] of sections) {
    if (COMMANDS[command] !== undefined) t.same(block, trimmed(helpText(command)), `svcproxy ${command} --help (${fix})`)
  }
  // Implied by the above; spelled out so a missing flag or default fails with its name.
  for (const [name, spec] of Object.entries(FLAGS)) {
    const commands = spec.commands.includes('*') ? [...sections.keys()] : spec.commands
    for (const c of commands) {
      const line = sections.get(c)?.find((l) => l.includes(`--${name}`))
      t.ok(line !== undefined, `--${name} documented under svcproxy ${c}`)
      if (line !== undefined && spec.default !== undefined && spec.default !== false && spec.default !== '') t.ok(line.endsWith(`(default ${String(spec.default)})`), `--${name} shows its default ${String(spec.default)} under svcproxy ${c}`)
    }
  }
})

t.test('cli: the admin flags table of docs/operations.md shows each default from lib/cli/flags.ts', async (t) => {
  const table = rows(section(read('docs/operations.md'), '## Admin flags')).filter((r) => ticked(r[0])?.startsWith('--') === true)
  t.ok(table.length >= 4, `${table.length} admin flags documented`)
  for (const r of table) {
    const name = (ticked(r[0]) ?? '').split(' ')[0]?.slice(2) ?? ''
    const spec = FLAGS[name]
    t.ok(spec !== undefined, `--${name} is a flag`)
    if (spec === undefined) continue
    const want = spec.default === undefined || spec.default === false ? 'off' : String(spec.default)
    t.equal(ticked(r[1]) ?? r[1], want, `--${name}: default`)
  }
})

t.test('close reasons: CLOSE_REASONS and the table in docs/operations.md agree', async (t) => {
  const docs = tickedKeys(section(read('docs/operations.md'), '### Close reasons'))
  sameSet(t, docs, CLOSE_REASONS.map((r) => r.reason), 'close reasons')
  // docs/udp.md says which UDP event ends a session with which reason: only known ones.
  const udp = rows(section(read('docs/udp.md'), '## When a session ends')).map((r) => ticked(r[2])).filter((r): r is string => r !== null)
  t.ok(udp.length > 0, 'docs/udp.md names close reasons')
  const known = new Set<string>(CLOSE_REASONS.map((r) => r.reason))
  t.same(udp.filter((r) => !known.has(r)), [], 'docs/udp.md names only close reasons that exist')
})

t.test('drop reasons: DROP_REASONS and the table in docs/udp.md agree', async (t) => {
  const text = read('docs/udp.md')
  const start = text.indexOf('| reason | when |')
  t.ok(start >= 0, 'docs/udp.md has the drop reasons table')
  const table = text.slice(start).split('\n\n')[0] ?? ''
  sameSet(t, tickedKeys(table), DROP_REASONS.map((r) => r.reason), 'UDP drop reasons')
})
