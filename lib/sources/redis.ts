// The Redis source: list + watch over the store the writers (lib/store) maintain, the way
// kube-proxy follows the API server. One loop owns the position in the feed, so lists, watch
// entries and resyncs are applied strictly in revision order.
//
//   list  (atomic: epoch, rev, all records) ─► diff against what we serve ─► proxy.write
//   watch XREAD BLOCK feed from `${rev}-0`  ─► entry rev must be rev+1, same epoch, else relist
//
// Safety rules: a bad record is logged by key and skipped (its last good version keeps
// serving); a store that comes back empty after we served data is not obeyed wholesale.

import type { Logger } from 'pino'
import { type ValidationError, formatIssue } from '../errors.js'
import type { KubeObject } from '../model/types.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import { type RedisClient, backoffMs, closeClient, createClient, redactUrl, waitReady } from '../store/connect.js'
import { decodeRecord } from '../store/records.js'
import { DEFAULT_PREFIX, type FeedOp, LIST_SCRIPT, decodeEntry, refOfKey, revOfId, storeKeys } from '../store/schema.js'
import { parseListReply } from '../store/store.js'
import type { ObjectRef } from '../table/refs.js'
import type { SourceHealth } from './health.js'
import { readStateFile, writeStateFile } from './redis-state.js'

export const DEFAULT_SYNC_PERIOD_MS = 30_000

export interface RedisSourceOptions {
  /** redis://, rediss://, redis+sentinel://, redis+cluster:// */
  url: string
  prefix?: string
  logger?: Logger
  /** Full relist period (--sync-period), default 30s: repairs anything a watch missed. */
  syncPeriodMs?: number
  /** Last-known-good snapshot (--state-file), written after each applied batch. */
  stateFile?: string
  /** XREAD BLOCK time; also how often an idle watch checks that the store was not wiped. Default 1s. */
  blockMs?: number
  /** Entries read per XREAD, default 512. */
  batch?: number
  /** How long watchRedis() waits for the first list before resolving anyway (Redis down), default 5s. */
  startTimeoutMs?: number
  /** Called after each applied list or revision, in order (tests and benches use it). */
  onApplied?: (e: AppliedEvent) => void
}

export interface AppliedEvent {
  via: 'list' | 'watch' | 'state-file'
  revision: number
  /** Objects changed in the proxy by this step. */
  changed: number
}

export interface RedisSourceStats {
  /** Full lists done (the first one included). */
  lists: number
  /** Feed entries applied. */
  entries: number
  /** Reconnects that resumed the watch where it stopped (no relist). */
  resumes: number
  /** Relists forced because the feed no longer held the next revision. */
  gaps: number
  /** Records skipped because they did not validate. */
  badRecords: number
}

export interface RedisSource {
  /** Last revision applied from the store. */
  readonly revision: number
  readonly stats: Readonly<RedisSourceStats>
  health: () => SourceHealth
  /** Resolves once something is served: the first list, or the state file. */
  synced: () => Promise<void>
  /** Relist at the next opportunity (SIGHUP). */
  resync: () => void
  close: () => Promise<void>
}

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
  private readonly keys
  private readonly cmd: RedisClient
  private readonly blk: RedisClient
  private readonly syncPeriodMs: number
  private readonly where: string

  /** What we serve: key → stored text of the version in the proxy (last good one). */
  private mirror = new Map<string, string>()
  /** Epoch and revision the served data came from. */
  private dataEpoch = ''
  private dataRev = 0
  /** The feed we follow: its epoch and the last revision read from it. */
  private watchEpoch = ''
  private lastRev = 0

  private connected = false
  private lastError = ''
  private guard = false
  private fromFile = false
  private isSynced = false
  private lastSyncedAt = 0
  private needList = true
  private needCheck = false
  /** An idle check saw a revision the feed did not deliver: relist if the next read is idle too. */
  private suspectRev = 0
  private nextResyncAt = 0
  private closed = false
  private loopDone: Promise<void> = Promise.resolve()
  private stateWrite: Promise<void> | null = null
  private stateDirty = false
  private readonly syncedWaiters: Array<() => void> = []
  private firstAttempt: (() => void) | null = null

  constructor (private readonly proxy: ServiceProxy, private readonly opts: RedisSourceOptions) {
    this.log = (opts.logger ?? proxy.logger).child({ source: 'redis' })
    this.keys = storeKeys(opts.prefix ?? DEFAULT_PREFIX)
    this.syncPeriodMs = opts.syncPeriodMs ?? DEFAULT_SYNC_PERIOD_MS
    this.where = redactUrl(opts.url)
    this.cmd = createClient(opts.url, { connectionName: 'svcproxy-list' })
    this.blk = createClient(opts.url, { connectionName: 'svcproxy-watch' })
    for (const c of [this.cmd, this.blk]) {
      c.on('error', (err: Error) => {
        this.lastError = err.message
        this.down(err)
      })
      // A clean close (server shut down, connection killed) emits no 'error'.
      c.on('close', () => { this.down(new Error('connection closed')) })
    }
  }

  get revision (): number { return this.dataRev }

  health (): SourceHealth {
    let reason = ''
    if (this.guard) reason = 'store came back empty; serving the last known state until it holds data again'
    else if (!this.connected) reason = `store unreachable${this.lastError === '' ? '' : `: ${this.lastError}`}`
    else if (this.fromFile) reason = 'serving the state file; the store has not been listed yet'
    return { kind: 'redis', synced: this.isSynced, stale: reason !== '', reason, lastSyncedAt: this.lastSyncedAt, revision: this.dataRev }
  }

  synced (): Promise<void> {
    if (this.isSynced) return Promise.resolve()
    return new Promise((resolve) => this.syncedWaiters.push(resolve))
  }

  resync (): void { this.needList = true }

  async start (): Promise<void> {
    if (this.opts.stateFile !== undefined) await this.loadStateFile(this.opts.stateFile)
    const first = new Promise<void>((resolve) => { this.firstAttempt = resolve })
    this.loopDone = this.loop()
    const timeout = setTimeout(() => this.firstAttempt?.(), this.opts.startTimeoutMs ?? 5000)
    await first
    clearTimeout(timeout)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.blk.disconnect() // aborts a pending XREAD BLOCK
    await closeClient(this.cmd)
    await this.loopDone
    await this.stateWrite
  }

  private markSynced (): void {
    this.isSynced = true
    this.lastSyncedAt = Date.now()
    for (const w of this.syncedWaiters.splice(0)) w()
    this.firstAttempt?.()
    this.firstAttempt = null
  }

  private down (err: unknown): void {
    if (this.closed) return
    if (this.connected) {
      this.log.warn({ redis: this.where, err: (err as Error).message, revision: this.dataRev }, 'lost the store; serving the last state while reconnecting')
    }
    this.connected = false
    this.needCheck = true
    if (!this.isSynced && this.firstAttempt !== null) {
      this.log.error({ redis: this.where, err: (err as Error).message }, 'store unreachable at start and no state file to serve; retrying')
    }
    this.firstAttempt?.()
    this.firstAttempt = null
  }

  private async loop (): Promise<void> {
    let failures = 0
    while (!this.closed) {
      try {
        if (!(await waitReady(this.cmd, 1000)) || !(await waitReady(this.blk, 1000))) continue
        if (!this.connected) {
          this.connected = true
          this.log.info({ redis: this.where }, 'connected to the store')
        }
        if (this.needList || Date.now() >= this.nextResyncAt) {
          await this.relist()
        } else if (this.needCheck) {
          await this.check(false)
        }
        if (this.needList) continue
        const reply = await this.blk.call('XREAD', ['COUNT', this.opts.batch ?? 512, 'BLOCK', this.opts.blockMs ?? 1000, 'STREAMS', this.keys.feed, `${this.lastRev}-0`])
        failures = 0
        if (reply === null) await this.check(true)
        else await this.applyEntries(reply)
      } catch (err) {
        if (this.closed) break
        this.down(err)
        await sleep(backoffMs(failures++, 2000))
      }
    }
  }

  /** After a reconnect or an idle read: is the feed we follow still the store's? */
  private async check (idle: boolean): Promise<void> {
    const reply = await this.cmd.call('MGET', [this.keys.epoch, this.keys.rev])
    this.needCheck = false
    const [epoch, revText] = Array.isArray(reply) ? reply as unknown[] : []
    const storeEpoch = typeof epoch === 'string' ? epoch : ''
    const rev = Number(typeof revText === 'string' ? revText : '0')
    if (storeEpoch !== this.watchEpoch || rev < this.lastRev) {
      this.log.warn({ redis: this.where, epoch: storeEpoch, revision: rev, following: this.lastRev }, 'the store was reset or rolled back; relisting')
      this.needList = true
      return
    }
    if (!idle) {
      this.stats.resumes++
      this.log.info({ revision: this.lastRev }, 'resuming the watch where it stopped')
    } else if (rev > this.lastRev) {
      // The feed may be gone while the counter moved on; a write may also just have landed.
      if (this.suspectRev !== 0 && rev >= this.suspectRev) {
        this.log.warn({ revision: rev, following: this.lastRev }, 'the feed does not deliver revisions the store has; relisting')
        this.needList = true
      }
      this.suspectRev = rev
      return
    }
    this.suspectRev = 0
    if (!this.guard && !this.fromFile) this.lastSyncedAt = Date.now()
  }

  private async relist (): Promise<void> {
    const snap = parseListReply(await this.cmd.call('EVAL', [LIST_SCRIPT, 4, this.keys.objects, this.keys.rev, this.keys.epoch, this.keys.feed]))
    this.stats.lists++
    this.needList = false
    this.needCheck = false
    this.suspectRev = 0
    this.nextResyncAt = Date.now() + this.syncPeriodMs

    if (snap.records.size === 0 && this.mirror.size > 0 && snap.epoch !== this.dataEpoch) {
      // A restart without persistence (or a flush) would otherwise blackhole every node at once.
      if (!this.guard) {
        this.log.error({ redis: this.where, servedRevision: this.dataRev, objects: this.mirror.size },
          'THE STORE IS EMPTY after having held data (restarted without persistence?). NOT applying it: still serving the last known state until the store holds data again. Explicit deletes are still obeyed.')
      }
      if (snap.epoch !== this.watchEpoch) this.lastRev = 0 // replay the new store's feed: its deletes count
      this.guard = true
      this.watchEpoch = snap.epoch
      this.markSynced()
      return
    }
    if (this.guard) this.log.warn({ revision: snap.revision, objects: snap.records.size }, 'the store holds data again: converging to it')
    this.guard = false

    const upserts: KubeObject[] = []
    const deletes: ObjectRef[] = []
    const next = new Map<string, string>()
    for (const [key, text] of snap.records) {
      const prev = this.mirror.get(key)
      if (prev === text) { next.set(key, text); continue }
      const obj = this.decode(key, text, snap.revision)
      if (obj === undefined) {
        if (prev !== undefined) next.set(key, prev)
        continue
      }
      upserts.push(obj)
      next.set(key, text)
    }
    for (const key of this.mirror.keys()) {
      if (snap.records.has(key)) continue
      const ref = refOfKey(key)
      if (ref !== null) deletes.push(ref)
    }
    const wasFromFile = this.fromFile
    const firstList = this.stats.lists === 1
    this.mirror = next
    const changed = await this.write(upserts, deletes, snap.revision)
    if (!firstList && !wasFromFile && changed > 0) {
      this.log.warn({ revision: snap.revision, changed }, 'relist found differences with the served state; repaired')
    }
    this.dataEpoch = this.watchEpoch = snap.epoch
    this.dataRev = this.lastRev = snap.revision
    this.fromFile = false
    this.markSynced()
    this.log.info({ revision: snap.revision, objects: next.size }, 'listed the store')
    this.opts.onApplied?.({ via: 'list', revision: snap.revision, changed })
    this.saveState()
  }

  private async applyEntries (reply: unknown): Promise<void> {
    this.suspectRev = 0
    const entries = feedEntries(reply)
    for (const [id, fields] of entries) {
      const rev = revOfId(id)
      if (Number.isNaN(rev)) {
        this.log.error({ key: `${this.keys.feed} ${id}` }, 'feed entry not written by svcproxy; relisting')
        this.needList = true
        break
      }
      if (rev <= this.lastRev) continue
      if (rev !== this.lastRev + 1 && !this.guard) {
        this.stats.gaps++
        this.log.warn({ following: this.lastRev, next: rev }, 'the feed no longer holds the next revision (trimmed); relisting')
        this.needList = true
        break
      }
      let entry
      try {
        entry = decodeEntry(fields)
      } catch (err) {
        this.log.error({ key: `${this.keys.feed} ${id}`, err: (err as Error).message }, 'unreadable feed entry; relisting')
        this.needList = true
        break
      }
      if (entry.epoch !== this.watchEpoch) {
        if (this.guard && this.watchEpoch === '') {
          this.watchEpoch = entry.epoch // the wiped store's first write
        } else {
          this.log.warn({ revision: rev }, 'feed entry from another store epoch; relisting')
          this.needList = true
          break
        }
      }
      if (this.guard) {
        if (entry.ops.some((o) => o.op === 'put')) { this.needList = true; break }
        this.lastRev = rev
        await this.applyOps(entry.ops, this.dataRev)
        continue
      }
      const changed = await this.applyOps(entry.ops, rev)
      this.lastRev = this.dataRev = rev
      this.stats.entries++
      this.opts.onApplied?.({ via: 'watch', revision: rev, changed })
    }
    if (!this.guard) this.lastSyncedAt = Date.now()
    this.saveState()
  }

  private async applyOps (ops: FeedOp[], rev: number): Promise<number> {
    const upserts: KubeObject[] = []
    const deletes: ObjectRef[] = []
    for (const op of ops) {
      if (op.op === 'del') {
        const ref = refOfKey(op.key)
        if (ref === null) continue
        deletes.push(ref)
        this.mirror.delete(op.key)
        continue
      }
      const obj = this.decode(op.key, op.obj, rev)
      if (obj === undefined) continue
      upserts.push(obj)
      this.mirror.set(op.key, op.obj)
    }
    return await this.write(upserts, deletes, rev)
  }

  /** One revision into the proxy; when the batch conflicts in the table, object by object. */
  private async write (upserts: KubeObject[], deletes: ObjectRef[], rev: number): Promise<number> {
    if (upserts.length === 0 && deletes.length === 0) return 0
    const label = `redis@${rev}`
    try {
      return (await this.proxy.write(upserts, deletes, label)).changed.length
    } catch (err) {
      if ((err as { code?: string }).code !== 'SVCPROXY_INVALID') throw err
    }
    let changed = 0
    if (deletes.length > 0) changed += (await this.proxy.write([], deletes, label)).changed.length
    for (const o of upserts) {
      try {
        changed += (await this.proxy.write([o], [], label)).changed.length
      } catch (err) {
        const key = `${o.kind}/${o.namespace}/${o.name}`
        this.stats.badRecords++
        this.log.error({ key, revision: rev, errors: issuesOf(err) }, 'record conflicts with the served state; skipped')
      }
    }
    return changed
  }

  private decode (key: string, text: string, rev: number): KubeObject | undefined {
    try {
      return decodeRecord(key, text)
    } catch (err) {
      this.stats.badRecords++
      this.log.error({ key: `${this.keys.objects} ${key}`, revision: rev, errors: issuesOf(err) }, 'bad record in the store; skipped (its last good version, if any, keeps serving)')
      return undefined
    }
  }

  private async loadStateFile (path: string): Promise<void> {
    let snap
    try {
      snap = await readStateFile(path)
    } catch (err) {
      this.log.error({ stateFile: path, err: (err as Error).message }, 'state file unreadable; ignoring it')
      return
    }
    if (snap === null) return
    const upserts: KubeObject[] = []
    for (const [key, text] of snap.records) {
      const obj = this.decode(key, text, snap.revision)
      if (obj === undefined) continue
      upserts.push(obj)
      this.mirror.set(key, text)
    }
    const changed = await this.write(upserts, [], snap.revision)
    this.dataEpoch = this.watchEpoch = snap.epoch
    this.dataRev = this.lastRev = snap.revision
    this.fromFile = true
    this.isSynced = true // serving something; health says stale until the store confirms it
    this.log.warn({ stateFile: path, revision: snap.revision, objects: this.mirror.size }, 'serving the state file until the store is listed')
    this.opts.onApplied?.({ via: 'state-file', revision: snap.revision, changed })
  }

  /** Coalesced: at most one write in flight, and the last one always holds the newest state. */
  private saveState (): void {
    const path = this.opts.stateFile
    if (path === undefined) return
    this.stateDirty = true
    if (this.stateWrite !== null) return
    this.stateWrite = (async () => {
      while (this.stateDirty) {
        this.stateDirty = false
        try {
          await writeStateFile(path, { epoch: this.dataEpoch, revision: this.dataRev, records: new Map(this.mirror) })
        } catch (err) {
          this.log.error({ stateFile: path, err: (err as Error).message }, 'cannot write the state file')
        }
      }
      this.stateWrite = null
    })()
  }
}

function issuesOf (err: unknown): string[] {
  const issues = (err as Partial<ValidationError>).issues
  return Array.isArray(issues) ? issues.map(formatIssue) : [(err as Error).message]
}

/**
 * XREAD reply → [id, fields][] of the one stream read. RESP2 nests `[[key, entries]]`; ioredis 6
 * may hand the map-shaped reply over flattened as `[key, entries]`: both are accepted.
 */
function feedEntries (reply: unknown): Array<[string, unknown]> {
  if (!Array.isArray(reply)) return []
  const streams: unknown[] = typeof reply[0] === 'string' ? [reply] : reply
  const out: Array<[string, unknown]> = []
  for (const stream of streams) {
    if (!Array.isArray(stream) || !Array.isArray(stream[1])) continue
    for (const e of stream[1] as unknown[]) {
      if (Array.isArray(e) && typeof e[0] === 'string') out.push([e[0], e[1]])
    }
  }
  return out
}
