/**
 * A fixed-bucket Prometheus histogram. `observe` is a short scan and three additions: no
 * allocation, so it may sit on any path. Buckets are stored per bucket (not cumulative);
 * the exposition writer accumulates them at scrape time.
 */
const NONE = new Float64Array(0)

export class Histogram {
  /** Upper bounds (`le`), ascending; the implicit last bucket is +Inf. */
  readonly bounds: readonly number[]
  /**
   * Observations per bucket; index `bounds.length` is the +Inf bucket. Empty (shared) until the
   * first observation: a proxy holds two histograms per service port, most never observed, and
   * 20,000 typed arrays made a tenth of the GC work of loading 10,000 services.
   */
  counts: Float64Array = NONE
  sum = 0
  count = 0

  constructor (bounds: readonly number[]) {
    for (let i = 1; i < bounds.length; i++) {
      if ((bounds[i] as number) <= (bounds[i - 1] as number)) throw new RangeError('histogram bounds must ascend')
    }
    this.bounds = bounds
  }

  observe (v: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && v > (b[i] as number)) i++
    if (this.counts === NONE) this.counts = new Float64Array(b.length + 1)
    this.counts[i] = (this.counts[i] ?? 0) + 1
    this.sum += v
    this.count++
  }
}

/** `n` bounds starting at `start`, each `factor` times the previous (Prometheus ExponentialBuckets). */
export function exponentialBuckets (start: number, factor: number, n: number): number[] {
  const out: number[] = []
  for (let i = 0, v = start; i < n; i++, v *= factor) out.push(Number(v.toPrecision(6)))
  return out
}
