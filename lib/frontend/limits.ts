// Resource limits of the TCP data path: a global connection cap (--max-connections),
// a per-service cap (annotation svcproxy.io/max-connections), the out-of-descriptors episode
// (EMFILE/ENFILE on accept: kube-proxy panicked there) and the idle sweep (--tcp-idle-timeout).
// Nothing here runs per chunk: admission is one comparison per accepted connection, and idle
// connections are found by one coarse timer per proxy, never a timer per connection.

import { closeSync, openSync } from 'node:fs'
import { devNull } from 'node:os'
import type { Logger } from 'pino'
import type { ServicePortRuntime } from './runtime.js'

/** One per proxy, shared by every frontend: what the limits need to count across service ports. */
export class ConnectionLimits {
  /** --max-connections: TCP connections open across every service port; 0 = no limit. */
  readonly max: number
  /** TCP connections admitted and not yet finished. */
  active = 0
  /** Connections reset at once because a limit was reached (global or per service). */
  rejected = 0
  /** Accept failures for lack of descriptors (EMFILE/ENFILE), every one counted. */
  acceptErrors = 0
  /** An out-of-descriptors episode is under way: logged once when it begins, once when it ends. */
  fdExhausted = false

  constructor (max: number) {
    this.max = max
  }
}

/**
 * Admission of one accepted connection. False: a limit is reached, the caller resets the
 * connection and keeps nothing of it. True: counted in `active` until the caller releases it.
 */
export function admit (limits: ConnectionLimits, rt: ServicePortRuntime, logger: Logger): boolean {
  if (limits.fdExhausted) fdRecovered(limits, logger)
  if ((limits.max > 0 && limits.active >= limits.max) || (rt.maxConnections > 0 && rt.serviceConnections.active >= rt.maxConnections)) {
    limits.rejected++
    rt.rejectedLimit++
    return false
  }
  limits.active++
  return true
}

/**
 * An accept (or a backend dial) that failed for lack of descriptors. The listener stays open and
 * the process neither spins nor exits. Node 20 rarely reports a failed accept at all: libuv keeps
 * a spare descriptor for this case, uses it to accept and close the pending connections (their
 * clients see the connection closed, not a hang in the backlog) and tells nobody. So an episode
 * is also noticed by a failed backend dial and by probeDescriptors(), and logged once; it ends
 * (logged once more) when a descriptor can be opened again or a connection is admitted.
 */
export function acceptFailed (limits: ConnectionLimits, logger: Logger, service: string, code: string): void {
  limits.acceptErrors++
  fdEpisode(limits, logger, service, code)
}

function fdEpisode (limits: ConnectionLimits, logger: Logger, service: string, code: string): void {
  if (limits.fdExhausted) return
  limits.fdExhausted = true
  logger.error({ service, code }, 'accept failed: out of file descriptors; new connections are closed until descriptors free up (logged once per episode)')
}

function fdRecovered (limits: ConnectionLimits, logger: Logger): void {
  limits.fdExhausted = false
  logger.warn({ acceptErrors: limits.acceptErrors }, 'file descriptors available again: accepting connections')
}

/** How often the data plane checks that a descriptor can still be opened. */
export const FD_PROBE_INTERVAL_MS = 1000

/** Opens and closes one descriptor: the only way to see an exhaustion libuv absorbed silently. */
export function probeDescriptors (limits: ConnectionLimits, logger: Logger): void {
  let fd: number
  try {
    fd = openSync(devNull, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (code === 'EMFILE' || code === 'ENFILE') fdEpisode(limits, logger, '', code)
    return
  }
  closeSync(fd)
  if (limits.fdExhausted) fdRecovered(limits, logger)
}

/**
 * How the idle sweep runs for a timeout: every `intervalMs`, and a connection whose byte counts
 * did not move for `ticks` sweeps in a row is closed. Its idle time at close is then between
 * timeoutMs and timeoutMs + intervalMs.
 */
export function idleSchedule (timeoutMs: number): { intervalMs: number, ticks: number } {
  const intervalMs = Math.max(10, Math.min(5000, Math.floor(timeoutMs / 4)))
  return { intervalMs, ticks: Math.max(1, Math.ceil(timeoutMs / intervalMs)) }
}

/** The coarse timer: one per proxy, unref'd so it never holds the process open. */
export class IdleSweeper {
  private readonly timer: NodeJS.Timeout
  constructor (timeoutMs: number, sweep: (ticks: number) => void) {
    const { intervalMs, ticks } = idleSchedule(timeoutMs)
    this.timer = setInterval(sweep, intervalMs, ticks)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }
}
