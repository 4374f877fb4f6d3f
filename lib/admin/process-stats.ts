import { readFile, readdir } from 'node:fs/promises'
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks'

export interface ProcessSnapshot {
  /** Event-loop delay since the previous snapshot, seconds. */
  loopDelayP50: number
  loopDelayP99: number
  loopDelayMax: number
  heapUsed: number
  heapTotal: number
  rss: number
  external: number
  cpuUserSeconds: number
  cpuSystemSeconds: number
  /** Open file descriptors; -1 where /proc/self/fd does not exist (not Linux). */
  openFds: number
  /** The soft limit on open descriptors (RLIMIT_NOFILE, what EMFILE is measured against); -1 where /proc/self/limits does not exist. */
  maxFds: number
  /** Virtual memory size, bytes; -1 where /proc/self/stat does not exist. */
  virtualMemory: number
  startTimeSeconds: number
}

const START_TIME_SECONDS = performance.timeOrigin / 1000

/**
 * Process health, sampled at scrape time. The event-loop monitor samples inside libuv
 * (a timer every `resolutionMs`), so it costs the data path nothing; each snapshot resets it,
 * making the delay figures "since the previous scrape".
 */
export class ProcessStats {
  private readonly loop: IntervalHistogram
  /** The monitor records the whole timer interval; the delay is what exceeds it. */
  private readonly resolutionNs: number

  constructor (resolutionMs = 20) {
    this.resolutionNs = resolutionMs * 1e6
    this.loop = monitorEventLoopDelay({ resolution: resolutionMs })
    this.loop.enable()
  }

  async snapshot (): Promise<ProcessSnapshot> {
    const h = this.loop
    // Before the first sample the histogram reports its sentinel min/max; show 0 instead.
    const sampled = h.count > 0
    const delay = (ns: number): number => (sampled ? Math.max(0, ns - this.resolutionNs) / 1e9 : 0)
    const snap = { loopDelayP50: delay(h.percentile(50)), loopDelayP99: delay(h.percentile(99)), loopDelayMax: delay(h.max) }
    h.reset()
    const mem = process.memoryUsage()
    const cpu = process.cpuUsage()
    return {
      ...snap,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
      rss: mem.rss,
      external: mem.external,
      cpuUserSeconds: cpu.user / 1e6,
      cpuSystemSeconds: cpu.system / 1e6,
      openFds: await countOpenFds(),
      maxFds: await maxOpenFds(),
      virtualMemory: await virtualMemorySize(),
      startTimeSeconds: START_TIME_SECONDS,
    }
  }

  close (): void {
    this.loop.disable()
  }
}

async function countOpenFds (): Promise<number> {
  try {
    // readdir holds one descriptor on the directory itself while it lists it.
    return (await readdir('/proc/self/fd')).length - 1
  } catch {
    return -1
  }
}

/** The soft "Max open files" of /proc/self/limits (what Prometheus's process collectors call process_max_fds). */
async function maxOpenFds (): Promise<number> {
  try {
    const line = (await readFile('/proc/self/limits', 'utf8')).split('\n').find((l) => l.startsWith('Max open files'))
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0]
    return soft === undefined ? -1 : soft === 'unlimited' ? Infinity : Number(soft)
  } catch {
    return -1
  }
}

/** vsize, field 23 of /proc/self/stat (counted after the command name, which may hold spaces). */
async function virtualMemorySize (): Promise<number> {
  try {
    const stat = await readFile('/proc/self/stat', 'utf8')
    const v = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[20])
    return Number.isFinite(v) ? v : -1
  } catch {
    return -1
  }
}
