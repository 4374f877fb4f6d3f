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
  /**
   * svcproxy_accept_errors_total: each out-of-descriptors episode on the accept path once (however
   * many accepts and dials failed in it), and every other failed accept libuv reports.
   */
  acceptErrors = 0
  /** An out-of-descriptors episode is under way: logged once when it begins, once when it ends. */
  fdExhausted = false
  /** TCP listeners open (TcpFrontend): an episode noticed by the probe is on the accept path only when some exist. */
  tcpListeners = 0

  constructor (max: number) {
    this.max = max
  }
}

/**
 * Admission of one accepted connection. False: a limit is reached, the caller resets the
 * connection and keeps nothing of it. True: counted in `active` until the caller releases it.
 */
export function admit (limits: ConnectionLimits, rt: ServicePortRuntime): boolean {
  if ((limits.max > 0 && limits.active >= limits.max) || (rt.maxConnections > 0 && rt.serviceConnections.active >= rt.maxConnections)) {
    limits.rejected++
    rt.rejectedLimit++
    return false
  }
  limits.active++
  return true
}

/** Where an out-of-descriptors failure was seen: the listener's service and address, or a dial's service. */
export interface FdFailure {
  code: string
  /** `accept`: a listener reported it; `dial`: a backend socket could not be made; `probe`: probeDescriptors(). */
  noticed: 'accept' | 'dial' | 'probe'
  /** The service port (`ns/name:port`); absent when the probe noticed it (no listener said so). */
  service?: string
  /** The listener's address, for `accept`. */
  address?: string
}

/** EMFILE or ENFILE: the process, or the system, is out of file descriptors. */
export function isFdExhaustion (code: string): boolean {
  return code === 'EMFILE' || code === 'ENFILE'
}

/**
 * An accept or a backend dial failed for lack of descriptors. The listener stays open and the
 * process neither spins nor exits. Node rarely reports a failed accept at all: libuv keeps a
 * spare descriptor for this case, uses it to accept and close the pending connections (their
 * clients see the connection closed, not a hang in the backlog) and tells nobody. So an episode
 * is also noticed by a failed backend dial and by probeDescriptors(). Either way it is counted
 * and logged once when it begins, and its end is logged once (probeDescriptors()).
 */
export function acceptFailed (limits: ConnectionLimits, logger: Logger, f: FdFailure): void {
  if (limits.fdExhausted) return
  limits.fdExhausted = true
  // The probe sees the process's exhaustion; it is an accept failure only where something accepts.
  if (f.noticed !== 'probe' || limits.tcpListeners > 0) limits.acceptErrors++
  logger.error(f, 'accept failed: out of file descriptors; new connections are closed until descriptors free up (logged once per episode)')
}

function fdRecovered (limits: ConnectionLimits, logger: Logger): void {
  limits.fdExhausted = false
  logger.warn({ acceptErrors: limits.acceptErrors }, 'file descriptors available again: accepting connections')
}

/** How often the data plane checks that a descriptor can still be opened. */
export const FD_PROBE_INTERVAL_MS = 1000

/**
 * Opens and closes descriptors: the only way to see an exhaustion libuv absorbed silently. An
 * episode ends when two can be opened: a proxied connection needs two (client and backend), and
 * with one free the next accept takes it, its dial fails and the episode would begin again.
 */
export function probeDescriptors (limits: ConnectionLimits, logger: Logger): void {
  const fds: number[] = []
  try {
    for (let i = limits.fdExhausted ? 2 : 1; i > 0; i--) fds.push(openSync(devNull, 'r'))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (isFdExhaustion(code) && !limits.fdExhausted) acceptFailed(limits, logger, { code, noticed: 'probe' })
    return
  } finally {
    for (const fd of fds) closeSync(fd)
  }
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
