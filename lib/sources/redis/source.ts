// The Redis source: list + watch over the store the writers (lib/store) maintain, the way
// kube-proxy follows the API server. One loop owns the position in the feed, so lists, watch
// entries and resyncs are applied strictly in revision order.
//
//   lifecycle.ts  the states (link, position in the feed, what is served) and their transitions
//   sync.ts       list, feed entries, gap detection; proxy-writer.ts puts records into the proxy
//   state-file.ts the last-known-good snapshot (--state-file)
//
// This file connects, drives the loop, and reports health from the lifecycle. Every store
// command has a deadline (storeDeadlineMs): a hung server (SIGSTOP, a partition that drops
// packets) keeps the TCP connection up and answers nothing, and must read as a lost store. A
// store that answers with an error (a key of the wrong type, a BUSY script) is not a lost one:
// the link stays up, the fault is logged once and retried quietly until it clears.

import { DEFAULTS } from '../../defaults.js'
import type { Logger } from 'pino'
import type { ServiceProxy } from '../../api/service-proxy.js'
import { StoreError } from '../../errors.js'
import { type RedisClient, backoffMs, closeClient, createClient, describeStoreError, isStoreTimeout, isWrongType, redactUrl, waitReady } from '../../store/connect.js'
import { DEFAULT_PREFIX, type StoreKeys, corruptKeys, storeKeys } from '../../store/schema.js'
import type { SourceHealth } from '../health.js'
import { Lifecycle } from './lifecycle.js'
import { StateFileWriter } from './state-file.js'
import { StoreSync } from './sync.js'
import type { RedisSource, RedisSourceOptions, RedisSourceStats } from './types.js'

export const DEFAULT_SYNC_PERIOD_MS: number = DEFAULTS.syncPeriodMs

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * How long a store command may go unanswered (no byte received) before the store counts as hung:
 * the sync period, within 2 to 10 seconds. The idle check runs every blockMs, so a hung store
 * reads as stale within blockMs + this: within two sync periods, as kube-proxy's /healthz.
 */
export function storeDeadlineMs (syncPeriodMs: number): number {
  return Math.min(Math.max(syncPeriodMs, 2000), 10_000)
}

/** Starts following the store. Resolves after the first list, or once Redis proved unreachable. */
export async function watchRedis (proxy: ServiceProxy, opts: RedisSourceOptions): Promise<RedisSource> {
  const s = new RedisFollower(proxy, opts)
  await s.start()
  return s
}

class RedisFollower implements RedisSource {
  readonly stats: RedisSourceStats = { lists: 0, entries: 0, resumes: 0, gaps: 0, badRecords: 0, timeouts: 0 }
  private readonly log: Logger
  private readonly keys: StoreKeys
  private readonly cmd: RedisClient
  private readonly blk: RedisClient
  private readonly where: string
  private readonly life = new Lifecycle()
  private readonly sync: StoreSync
  private readonly stateFile: StateFileWriter | undefined

  private lastError = ''
  /** The store answers, but with an error (a corrupt key, a refusal): what, in words; '' when none. */
  private fault = ''
  private readonly deadlineMs: number
  private readonly syncPeriodMs: number
  private loopDone: Promise<void> = Promise.resolve()
  private readonly syncedWaiters: Array<() => void> = []
  private firstAttempt: (() => void) | null = null

  constructor (proxy: ServiceProxy, private readonly opts: RedisSourceOptions) {
    this.log = (opts.logger ?? proxy.logger).child({ source: 'redis' })
    this.keys = storeKeys(opts.prefix ?? DEFAULT_PREFIX)
    this.where = redactUrl(opts.url)
    this.syncPeriodMs = opts.syncPeriodMs ?? DEFAULT_SYNC_PERIOD_MS
    this.deadlineMs = storeDeadlineMs(this.syncPeriodMs)
    this.cmd = createClient(opts.url, { connectionName: 'svcproxy-list', timeoutMs: this.deadlineMs, tls: opts.tls })
    // The watch blocks blockMs by design before its (empty) answer.
    this.blk = createClient(opts.url, { connectionName: 'svcproxy-watch', timeoutMs: (opts.blockMs ?? 1000) + this.deadlineMs, tls: opts.tls })
    this.sync = new StoreSync({
      proxy,
      cmd: this.cmd,
      keys: this.keys,
      log: this.log,
      where: this.where,
      life: this.life,
      stats: this.stats,
      syncPeriodMs: this.syncPeriodMs,
      onApplied: opts.onApplied,
      onSynced: () => { this.markSynced() },
      saveState: () => { this.stateFile?.save() },
    })
    this.stateFile = opts.stateFile === undefined ? undefined : new StateFileWriter(opts.stateFile, () => this.sync.snapshot(), this.log)
    for (const c of [this.cmd, this.blk]) {
      c.on('error', (err: Error) => {
        if (isStoreTimeout(err)) this.stats.timeouts++
        this.lastError = describeStoreError(err)
        this.down(err)
      })
      // A clean close (server shut down, connection killed) emits no 'error'.
      c.on('close', () => { this.down(new Error('connection closed')) })
    }
  }

  get revision (): number { return this.sync.revision }

  health (): SourceHealth {
    let reason = ''
    if (this.life.guarded) reason = 'store came back empty; serving the last known state until it holds data again'
    else if (this.life.link !== 'connected') reason = `store unreachable${this.lastError === '' ? '' : `: ${this.lastError}`}`
    else if (this.fault !== '') reason = this.fault
    else if (this.life.servingFile) reason = 'serving the state file; the store has not been listed yet'
    return { kind: 'redis', synced: this.life.synced, stale: reason !== '', reason, lastSyncedAt: this.sync.lastSyncedAt, revision: this.sync.revision, timeouts: this.stats.timeouts }
  }

  synced (): Promise<void> {
    if (this.life.synced) return Promise.resolve()
    return new Promise((resolve) => this.syncedWaiters.push(resolve))
  }

  resync (): void { this.life.mustList() }

  async start (): Promise<void> {
    if (this.opts.stateFile !== undefined) await this.sync.loadStateFile(this.opts.stateFile)
    const first = new Promise<void>((resolve) => { this.firstAttempt = resolve })
    this.loopDone = this.loop()
    const timeout = setTimeout(() => this.firstAttempt?.(), this.opts.startTimeoutMs ?? 5000)
    await first
    clearTimeout(timeout)
  }

  async close (): Promise<void> {
    if (!this.life.close()) return
    this.blk.disconnect() // aborts a pending XREAD BLOCK
    await closeClient(this.cmd)
    await this.loopDone
    await this.stateFile?.pending
  }

  /** Called by the sync code once the lifecycle says something is served. */
  private markSynced (): void {
    for (const w of this.syncedWaiters.splice(0)) w()
    this.firstAttempt?.()
    this.firstAttempt = null
  }

  private down (err: unknown): void {
    if (this.life.closed) return
    const why = describeStoreError(err)
    if (this.life.lost()) {
      // One line per outage: the retries that follow are quiet (health and metrics tell).
      if (isStoreTimeout(err)) {
        this.log.warn({ redis: this.where, err: why, revision: this.sync.revision }, 'the store stopped answering; serving the last state while reconnecting')
      } else {
        this.log.warn({ redis: this.where, err: why, revision: this.sync.revision }, 'lost the store; serving the last state while reconnecting')
      }
    }
    if (!this.life.synced && this.firstAttempt !== null) {
      this.log.error({ redis: this.where, err: why }, 'store unreachable at start and no state file to serve; retrying')
    }
    this.firstAttempt?.()
    this.firstAttempt = null
  }

  /**
   * The store answered with an error. A lost link would be the wrong story (and reconnecting
   * changes nothing): the last state keeps serving, the fault is logged once and shown in health,
   * and the step is retried quietly, at most every sync period, until it works again.
   */
  private async faulted (err: unknown): Promise<void> {
    let text: string
    let keys: string[] = []
    const corrupt = isWrongType(err) || (err instanceof StoreError && err.code === 'SVCPROXY_STORE_CORRUPT')
    if (corrupt) {
      const found = await corruptKeys(this.cmd, this.keys).catch(() => [])
      keys = found.map((f) => f.key)
      text = `store corrupt: ${found.length > 0 ? found.map((f) => f.problem).join('; ') : describeStoreError(err)}`
    } else {
      text = `store refuses commands: ${describeStoreError(err)}`
    }
    this.firstAttempt?.()
    this.firstAttempt = null
    if (text === this.fault) return
    this.fault = text
    const code = corrupt ? 'SVCPROXY_STORE_CORRUPT' : 'SVCPROXY_STORE_UNAVAILABLE'
    this.log.error({ code, redis: this.where, ...(keys.length > 0 ? { key: keys.join(', ') } : {}), revision: this.sync.revision },
      `${text}. Still serving revision ${this.sync.revision}; retrying quietly until the store is repaired`)
  }

  private faultCleared (): void {
    if (this.fault === '') return
    this.fault = ''
    this.log.info({ redis: this.where, revision: this.sync.revision }, 'the store answers normally again')
  }

  private async loop (): Promise<void> {
    let failures = 0
    while (!this.life.closed) {
      try {
        if (!(await waitReady(this.cmd, 1000)) || !(await waitReady(this.blk, 1000))) continue
        if (this.life.connected()) this.log.info({ redis: this.where }, 'connected to the store')
        if (this.life.position === 'listing') {
          await this.sync.relist()
        } else if (this.life.position === 'verifying') {
          await this.sync.check(false)
        } else if (this.sync.resyncDue()) {
          await this.sync.resync()
        }
        if (this.life.position === 'listing') continue
        const reply = await this.blk.call('XREAD', ['COUNT', this.opts.batch ?? 512, 'BLOCK', this.opts.blockMs ?? 1000, 'STREAMS', this.keys.feed, this.sync.cursor])
        failures = 0
        if (reply === null) await this.sync.check(true)
        else await this.sync.applyEntries(reply)
        this.faultCleared() // a whole turn worked
      } catch (err) {
        if (this.life.closed) break
        if (this.life.link === 'connected' && answered(err)) {
          await this.faulted(err)
          await sleep(backoffMs(failures++, this.syncPeriodMs))
          continue
        }
        this.down(err)
        await sleep(backoffMs(failures++, 2000))
      }
    }
  }
}

/** The server answered (with an error): the link is fine. Timeouts and connection errors are not answers. */
function answered (err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ReplyError' || err instanceof StoreError
}
