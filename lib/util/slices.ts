import { setImmediate as nextTurn } from 'node:timers/promises'

/**
 * Long control-plane work (a reload of 10,000s of objects) runs in slices so the event loop keeps
 * serving connections in between. The work is written once, as a generator that `yield`s at every
 * point where pausing is safe; `runNow` runs it straight through (synchronous callers), and
 * `runInSlices` pauses at a yield once the slice has run for `SLICE_MS`, until the loop has
 * served whatever I/O is ready (setImmediate: after the poll phase).
 */
export type Steps<T> = Generator<void, T, void>

/** A slice's budget. Small against the 50 ms a client may notice, large against one step (µs). */
export const SLICE_MS = 4

/** Runs the steps to the end without pausing. */
export function runNow<T> (steps: Steps<T>): T {
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
  }
}

/** Runs the steps, yielding the event loop between slices of about `sliceMs`. */
export async function runInSlices<T> (steps: Steps<T>, sliceMs = SLICE_MS): Promise<T> {
  const clock = new SliceClock(sliceMs)
  for (;;) {
    const r = steps.next()
    if (r.done === true) return r.value
    if (clock.due()) await clock.pause()
  }
}

/** For loops that are not generators (the data plane awaits binds in between): `if (clock.due()) await clock.pause()`. */
export class SliceClock {
  private readonly sliceMs: number
  private until: number

  constructor (sliceMs = SLICE_MS) {
    this.sliceMs = sliceMs
    this.until = performance.now() + sliceMs
  }

  /** True once this slice has used its budget. */
  due (): boolean {
    return performance.now() >= this.until
  }

  /** Lets the loop run (timers, I/O), then starts a new slice. */
  async pause (): Promise<void> {
    await nextTurn()
    this.until = performance.now() + this.sliceMs
  }
}
