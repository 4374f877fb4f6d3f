// The Redis source: list + watch over the store the writers (lib/store) maintain, the way
// kube-proxy follows the API server. One loop owns the position in the feed, so lists, watch
// entries and resyncs are applied strictly in revision order.
//
//   lifecycle.ts  the states (link, position in the feed, what is served) and their transitions
//   sync.ts       list, feed entries, gap detection; proxy-writer.ts puts records into the proxy
//   state-file.ts the last-known-good snapshot (--state-file)
//
// This file connects, drives the loop, and reports health from the lifecycle.

import { DEFAULTS } from '../../defaults.js'
import type { Logger } from 'pino'
import type { ServiceProxy } from '../../api/service-proxy.js'
import { type RedisClient, backoffMs, closeClient, createClient, redactUrl, waitReady } from '../../store/connect.js'
import { DEFAULT_PREFIX, type StoreKeys, storeKeys } from '../../store/schema.js'
import type { SourceHealth } from '../health.js'
import { Lifecycle } from './lifecycle.js'
import { StateFileWriter } from './state-file.js'
import { StoreSync } from './sync.js'
import type { RedisSource, RedisSourceOptions, RedisSourceStats } from './types.js'

export const DEFAULT_SYNC_PERIOD_MS: number = DEFAULTS.syncPeriodMs

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Starts following the store. Resolves after the first list, or once Redis proved unreachable. */
export async function watchRedis (proxy: ServiceProxy, opts: RedisSourceOptions): Promise<RedisSource> {
  const s = new RedisFollower(proxy, opts)
  await s.start()
  return s
}

class RedisFollower implements RedisSource {
  readonly stats: RedisSourceStats = { lists: 0, entries: 0, resumes: 0, gaps: 0, badRecords: 0 }
  private readonly log: Logger
  private readonly keys: StoreKeys
  private readonly cmd: RedisClient
  private readonly blk: RedisClient
  private readonly where: string
  private readonly life = new Lifecycle()
  private readonly sync: StoreSync
  private readonly stateFile: StateFileWriter | undefined

  private lastError = ''
  private loopDone: Promise<void> = Promise.resolve()
  private readonly syncedWaiters: Array<() => void> = []
  private firstAttempt: (() => void) | null = null

  constructor (proxy: ServiceProxy, private readonly opts: RedisSourceOptions) {
    this.log = (opts.logger ?? proxy.logger).child({ source: 'redis' })
    this.keys = storeKeys(opts.prefix ?? DEFAULT_PREFIX)
    this.where = redactUrl(opts.url)
    this.cmd = createClient(opts.url, { connectionName: 'svcproxy-list' })
    this.blk = createClient(opts.url, { connectionName: 'svcproxy-watch' })
    this.sync = new StoreSync({
      proxy,
      cmd: this.cmd,
      keys: this.keys,
      log: this.log,
      where: this.where,
      life: this.life,
      stats: this.stats,
      syncPeriodMs: opts.syncPeriodMs ?? DEFAULT_SYNC_PERIOD_MS,
      onApplied: opts.onApplied,
      onSynced: () => { this.markSynced() },
      saveState: () => { this.stateFile?.save() },
    })
    this.stateFile = opts.stateFile === undefined ? undefined : new StateFileWriter(opts.stateFile, () => this.sync.snapshot(), this.log)
    for (const c of [this.cmd, this.blk]) {
      c.on('error', (err: Error) => {
        this.lastError = err.message
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
    else if (this.life.servingFile) reason = 'serving the state file; the store has not been listed yet'
    return { kind: 'redis', synced: this.life.synced, stale: reason !== '', reason, lastSyncedAt: this.sync.lastSyncedAt, revision: this.sync.revision }
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
    if (this.life.lost()) {
      this.log.warn({ redis: this.where, err: (err as Error).message, revision: this.sync.revision }, 'lost the store; serving the last state while reconnecting')
    }
    if (!this.life.synced && this.firstAttempt !== null) {
      this.log.error({ redis: this.where, err: (err as Error).message }, 'store unreachable at start and no state file to serve; retrying')
    }
    this.firstAttempt?.()
    this.firstAttempt = null
  }

  private async loop (): Promise<void> {
    let failures = 0
    while (!this.life.closed) {
      try {
        if (!(await waitReady(this.cmd, 1000)) || !(await waitReady(this.blk, 1000))) continue
        if (this.life.connected()) this.log.info({ redis: this.where }, 'connected to the store')
        if (this.life.position === 'listing' || this.sync.resyncDue()) {
          await this.sync.relist()
        } else if (this.life.position === 'verifying') {
          await this.sync.check(false)
        }
        if (this.life.position === 'listing') continue
        const reply = await this.blk.call('XREAD', ['COUNT', this.opts.batch ?? 512, 'BLOCK', this.opts.blockMs ?? 1000, 'STREAMS', this.keys.feed, `${this.sync.following}-0`])
        failures = 0
        if (reply === null) await this.sync.check(true)
        else await this.sync.applyEntries(reply)
      } catch (err) {
        if (this.life.closed) break
        this.down(err)
        await sleep(backoffMs(failures++, 2000))
      }
    }
  }
}
