import type { Histogram } from '../util/histogram.js'

export type MetricType = 'counter' | 'gauge' | 'histogram'

/** Content-Type of the Prometheus text exposition format 0.0.4. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

/** Label values may hold anything; the format escapes only these three. */
export function escapeLabelValue (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** HELP text escapes backslash and newline (not quotes). */
function escapeHelp (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

/** `{a="x",b="y"}` body without braces, so callers can prebuild and extend it. */
export function labels (pairs: Record<string, string>): string {
  let out = ''
  for (const k in pairs) {
    if (!NAME_RE.test(k) || k.startsWith('__')) throw new RangeError(`bad label name ${k}`)
    out += `${out === '' ? '' : ','}${k}="${escapeLabelValue(pairs[k] ?? '')}"`
  }
  return out
}

export function formatValue (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

/**
 * Builds one scrape. Each family is declared once (HELP and TYPE), and its samples follow it
 * directly: the format requires a family's lines to be contiguous. Runs at scrape time only.
 */
export class Exposition {
  private readonly lines: string[] = []
  private readonly declared = new Set<string>()
  private name = ''
  private type: MetricType = 'gauge'

  family (name: string, type: MetricType, help: string): this {
    if (!NAME_RE.test(name)) throw new RangeError(`bad metric name ${name}`)
    if (this.declared.has(name)) throw new RangeError(`metric family ${name} declared twice`)
    if (type === 'counter' && !name.endsWith('_total')) throw new RangeError(`counter ${name} must end in _total`)
    this.declared.add(name)
    this.name = name
    this.type = type
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
    return this
  }

  /** One sample of the current (counter or gauge) family; `lbls` from labels(). */
  sample (lbls: string, value: number): this {
    if (this.type === 'histogram') throw new RangeError(`${this.name}: use histogram()`)
    this.lines.push(`${this.name}${lbls === '' ? '' : `{${lbls}}`} ${formatValue(value)}`)
    return this
  }

  /** Cumulative `_bucket` lines (le ascending, +Inf last), then `_sum` and `_count`. */
  histogram (lbls: string, h: Histogram): this {
    if (this.type !== 'histogram') throw new RangeError(`${this.name} is not a histogram`)
    const pre = lbls === '' ? '' : `${lbls},`
    let cum = 0
    for (let i = 0; i < h.bounds.length; i++) {
      cum += h.counts[i] ?? 0
      this.lines.push(`${this.name}_bucket{${pre}le="${formatValue(h.bounds[i] as number)}"} ${cum}`)
    }
    cum += h.counts[h.bounds.length] ?? 0
    this.lines.push(`${this.name}_bucket{${pre}le="+Inf"} ${cum}`)
    const braces = lbls === '' ? '' : `{${lbls}}`
    this.lines.push(`${this.name}_sum${braces} ${formatValue(h.sum)}`, `${this.name}_count${braces} ${h.count}`)
    return this
  }

  text (): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`
  }
}
