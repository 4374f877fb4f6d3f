import { Histogram, exponentialBuckets } from '../util/histogram.js'

/**
 * The buckets kube-proxy uses for `sync_proxy_rules_duration_seconds`
 * (ExponentialBuckets(0.001, 2, 15): 1ms .. ~16s), so dashboards carry over.
 */
export const SYNC_DURATION_BUCKETS: readonly number[] = exponentialBuckets(0.001, 2, 15)

/**
 * Control-plane timing: one observation per serialized write (apply/write/replace/delete),
 * from the moment it starts running (not while queued) until the data path serves it.
 */
export class SyncStats {
  readonly duration = new Histogram(SYNC_DURATION_BUCKETS)
  /** Completion time (ms since epoch) of the last successful sync; 0 before the first. */
  lastSyncAt = 0
  /** Writes that were rejected (validation, conflicts) or failed, each once (fail()). */
  errors = 0
  /** Failures already counted: a source that reports a failure the proxy counted does not count it again. */
  private readonly counted = new WeakSet<object>()

  /** Counts one failed sync, unless this very error was counted already. */
  fail (err: unknown): void {
    if (typeof err === 'object' && err !== null) {
      if (this.counted.has(err)) return
      this.counted.add(err)
    }
    this.errors++
  }

  /** True if `err` was counted (by a write that threw it, or by fail()). */
  hasCounted (err: unknown): boolean {
    return typeof err === 'object' && err !== null && this.counted.has(err)
  }

  async time<T> (fn: () => Promise<T>): Promise<T> {
    const start = performance.now()
    try {
      const r = await fn()
      this.lastSyncAt = Date.now()
      return r
    } catch (err) {
      this.fail(err)
      throw err
    } finally {
      this.duration.observe((performance.now() - start) / 1000)
    }
  }
}
