/**
 * A strict reader of the Prometheus text format (0.0.4), for tests: it throws on anything a
 * Prometheus server would reject or misread, and returns the samples for lookups.
 */
export interface Sample { name: string, labels: Record<string, string>, value: number }
export interface Scrape { samples: Sample[], types: Map<string, string>, help: Map<string, string> }

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const SAMPLE_RE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`)
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y

function parseValue (s: string): number {
  if (s === '+Inf') return Infinity
  if (s === '-Inf') return -Infinity
  if (s === 'NaN') return NaN
  if (!/^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(s)) throw new Error(`bad value ${s}`)
  return Number(s)
}

function parseLabels (body: string, line: string): Record<string, string> {
  const out: Record<string, string> = {}
  LABEL_RE.lastIndex = 0
  let pos = 0
  while (pos < body.length) {
    LABEL_RE.lastIndex = pos
    const m = LABEL_RE.exec(body)
    if (m === null) throw new Error(`bad labels in: ${line}`)
    const k = m[1] ?? ''
    if (k in out) throw new Error(`duplicate label ${k} in: ${line}`)
    out[k] = (m[2] ?? '').replace(/\\(.)/g, (_all, c: string) => (c === 'n' ? '\n' : c))
    pos = LABEL_RE.lastIndex
  }
  return out
}

export function parseExposition (text: string): Scrape {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline')
  const types = new Map<string, string>()
  const help = new Map<string, string>()
  const samples: Sample[] = []
  const done = new Set<string>()
  let current = ''
  const seen = new Set<string>()
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) {
      const [, kind, name, rest] = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line) ?? []
      if (name === undefined || !new RegExp(`^${NAME}$`).test(name)) throw new Error(`bad comment: ${line}`)
      if (name !== current) {
        if (done.has(name)) throw new Error(`family ${name} is not contiguous`)
        if (current !== '') done.add(current)
        current = name
      }
      if (kind === 'TYPE') {
        if (types.has(name)) throw new Error(`TYPE twice for ${name}`)
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest ?? '')) throw new Error(`bad type: ${line}`)
        types.set(name, rest ?? '')
      } else help.set(name, rest ?? '')
      continue
    }
    if (line.startsWith('#') || line === '') throw new Error(`unexpected line: "${line}"`)
    const m = SAMPLE_RE.exec(line)
    if (m === null) throw new Error(`bad sample: ${line}`)
    const name = m[1] ?? ''
    const family = types.get(name) === undefined ? name.replace(/_(bucket|sum|count)$/, '') : name
    const type = types.get(family)
    if (type === undefined) throw new Error(`sample before TYPE: ${line}`)
    if (family !== current) throw new Error(`sample outside its family block: ${line}`)
    if (family !== name && type !== 'histogram' && type !== 'summary') throw new Error(`suffix on a ${type}: ${line}`)
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter without _total: ${name}`)
    const labels = parseLabels(m[2] ?? '', line)
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`
    if (seen.has(key)) throw new Error(`duplicate series ${key}`)
    seen.add(key)
    const value = parseValue(m[3] ?? '')
    if ((type === 'counter' || name.endsWith('_bucket') || name.endsWith('_count')) && !(value >= 0)) throw new Error(`negative counter: ${line}`)
    samples.push({ name, labels, value })
  }
  checkHistograms(samples, types)
  return { samples, types, help }
}

/**
 * Per series (its labels without `le`): buckets ascend in `le` and in count, end at +Inf, +Inf
 * equals _count, and _sum is there. A labelled family may have no series yet (no observation).
 */
function checkHistograms (samples: Sample[], types: Map<string, string>): void {
  const seriesOf = (s: Sample): string => Object.entries(s.labels).filter(([k]) => k !== 'le').sort().map(([k, v]) => `${k}=${v}`).join(',')
  for (const [family, type] of types) {
    if (type !== 'histogram') continue
    const mine = samples.filter((s) => s.name === `${family}_bucket` || s.name === `${family}_count` || s.name === `${family}_sum`)
    for (const series of new Set(mine.map(seriesOf))) {
      const of = mine.filter((s) => seriesOf(s) === series)
      const buckets = of.filter((s) => s.name === `${family}_bucket`)
      const count = of.find((s) => s.name === `${family}_count`)
      if (buckets.length === 0 || count === undefined || of.find((s) => s.name === `${family}_sum`) === undefined) throw new Error(`${family}{${series}}: incomplete histogram`)
      let prevLe = -Infinity
      let prevN = 0
      for (const b of buckets) {
        const le = parseValue(b.labels.le ?? 'x')
        if (le <= prevLe || b.value < prevN) throw new Error(`${family}{${series}}: buckets not cumulative`)
        prevLe = le
        prevN = b.value
      }
      if (prevLe !== Infinity || prevN !== count.value) throw new Error(`${family}{${series}}: +Inf bucket missing or != _count`)
    }
  }
}

/** The value of the series with exactly these labels; undefined when absent. */
export function valueOf (s: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).sort()
  for (const x of s.samples) {
    if (x.name !== name) continue
    const got = Object.entries(x.labels).sort()
    if (got.length === want.length && got.every(([k, v], i) => want[i]?.[0] === k && want[i]?.[1] === v)) return x.value
  }
  return undefined
}
