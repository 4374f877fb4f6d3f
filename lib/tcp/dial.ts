import { noteDialFailed, notePairFinished, type PairBase, pickEndpoint } from './pair.js'
import { downFor } from './toxics.js'

/**
 * kube-proxy's dial ladder: 4 attempts, each on the next endpoint, with growing timeouts.
 * Unlike kube-proxy the ladder runs per connection, off the accept path (kubernetes#12242).
 * Written once for both engines; each supplies connect, cancel and abort (PairBase).
 */
export const DIAL_TIMEOUTS_MS = [250, 500, 1000, 2000] as const

/** Dials the balancer's next endpoint for `p`, or resets the client when there is none. */
export function dial (p: PairBase): void {
  const b = pickEndpoint(p)
  if (b === undefined) {
    p.abort(p.attempt === 0 ? 'no-endpoints' : 'dial-failed')
    return
  }
  p.endpoint = b
  // A `down` toxic (toxics.ts): refused at once, or a blackhole that the dial timeout below ends.
  const down = p.rt.faults === null ? null : downFor(p, b, p.rt.faults)
  const error = down === null ? p.connect(b) : down === 'refuse' ? `connect ECONNREFUSED ${b.key} (fault: down)` : ''
  if (error !== '') {
    dialFailed(p, error)
    return
  }
  p.timer = setTimeout(onDialTimeout, DIAL_TIMEOUTS_MS[p.attempt] ?? DIAL_TIMEOUTS_MS[DIAL_TIMEOUTS_MS.length - 1], p)
}

function onDialTimeout (p: PairBase): void {
  p.timer = null
  if (!p.connected) dialFailed(p, 'dial timeout')
}

/** A dial failed (refused, timed out, endpoint removed): the next rung, or a reset after the last. */
export function dialFailed (p: PairBase, error: string): void {
  if (p.finished) return
  p.cancelDial()
  noteDialFailed(p, error)
  if (p.clientGone()) { notePairFinished(p); return }
  if (nextRung(p)) dial(p)
  else p.abort('dial-failed')
}

/** After a failed dial: true if the ladder has another rung (dial again), false to give up. */
function nextRung (p: PairBase): boolean {
  const rt = p.rt
  // The client's pin pointed at the endpoint that failed: let the balancer choose afresh.
  if (rt.balancer.usesClientIP) rt.balancer.unpin(p.clientIP)
  p.attempt++
  if (p.attempt >= DIAL_TIMEOUTS_MS.length) return false
  rt.dialRetries++
  return true
}
