// Keeps what the proxy serves in step with the store, strictly in revision order: a full list
// diffed against what we serve, then the feed entry by entry. Whatever the feed cannot vouch for
// (a gap, another epoch, an unreadable entry, a store reset or rolled back) asks the lifecycle
// for a relist: the equivalent of HTTP 410 Gone.
//
//   list  (in slices, at one revision: store/snapshot.ts) ─► diff against what we serve ─► proxy.write
//   watch XREAD BLOCK feed from `${rev}-0`  ─► entry rev must be rev+1, same epoch, else relist
//
// Safety rules: a bad record is logged by key and skipped (its last good version keeps
// serving); a store that comes back empty after we served data is not obeyed wholesale; a feed
// entry svcproxy did not write is logged once and relisted over, and skipped when read again.

import type { Logger } from 'pino'
import type { KubeObject } from '../../model/types.js'
import type { ServiceProxy } from '../../api/service-proxy.js'
import type { RedisClient } from '../../store/connect.js'
import { type FeedEntry, type FeedOp, type StoreKeys, decodeEntry, parseRevision, partOfId, refOfKey, revOfId } from '../../store/schema.js'
import { readSnapshot } from '../../store/snapshot.js'
import type { ObjectRef } from '../../table/refs.js'
import type { Lifecycle } from './lifecycle.js'
import { ProxyWriter } from './proxy-writer.js'
import { type StateSnapshot, readStateFile } from './state-file.js'
import type { AppliedEvent, RedisSourceStats } from './types.js'

export interface SyncContext {
  proxy: ServiceProxy
  /** The command connection: lists and checks (the feed is read on a connection of its own). */
  cmd: RedisClient
  keys: StoreKeys
  log: Logger
  /** The store's URL, redacted, for logs. */
  where: string
  life: Lifecycle
  stats: RedisSourceStats
  syncPeriodMs: number
  onApplied: ((e: AppliedEvent) => void) | undefined
  /** Something is served and the store confirmed it: wake whoever waits for that. */
  onSynced: () => void
  /** The served state moved: persist it (--state-file). */
  saveState: () => void
}

export class StoreSync {
  /** What we serve: key → stored text of the version in the proxy (last good one). */
  private mirror = new Map<string, string>()
  /** Epoch and revision the served data came from. */
  private dataEpoch = ''
  private dataRev = 0
  /** The feed we follow: its epoch and the last revision read from it. */
  private watchEpoch = ''
  private lastRev = 0
  /** Id of the last feed entry consumed or skipped: the next read starts after it. */
  private feedCursor = '0-0'
  /** A revision written in parts, being gathered (schema 2). */
  private partial: { rev: number, want: number, got: number, ops: FeedOp[], epoch: string } | null = null
  /** Entries already relisted over once. Read again, they are not svcproxy's: skipped. */
  private readonly distrusted = new Set<string>()
  /** An idle check saw a revision the feed did not deliver: relist if the next read is idle too. */
  private suspectRev = 0
  /** The entry the last gap or epoch relist was for. */
  private relistedFor = ''
  private nextResyncAt = 0
  private confirmedAt = 0
  private readonly writer: ProxyWriter

  constructor (private readonly ctx: SyncContext) {
    this.writer = new ProxyWriter(ctx.proxy, ctx.log, ctx.stats, ctx.keys.objects)
  }

  /** Revision the served data came from. */
  get revision (): number { return this.dataRev }
  /** Stream id the next feed read starts after (`REV-0`, or a foreign entry skipped). */
  get cursor (): string { return this.feedCursor }
  /** Last time the store confirmed the served state (ms since epoch), 0 before. */
  get lastSyncedAt (): number { return this.confirmedAt }
  /** The periodic resync (--sync-period) is due. */
  resyncDue (): boolean { return Date.now() >= this.nextResyncAt }

  /**
   * The periodic resync, as kube-proxy's sync period: the data plane is reconciled from what we
   * serve (listeners in error bound again), and the store costs one MGET: its epoch and revision
   * say whether the watch missed something, and only then does it relist. Jittered, so a fleet
   * started together does not resync together.
   */
  async resync (): Promise<void> {
    await this.ctx.proxy.retryFailedListeners()
    // O(1) as well, and a hash that is no longer one is seen here (WRONGTYPE), not at the next relist.
    await this.ctx.cmd.call('HLEN', [this.ctx.keys.objects])
    await this.check(true, false)
    this.nextResyncAt = Date.now() + jittered(this.ctx.syncPeriodMs) // a failed resync is retried (after backoff)
  }

  /** What the state file holds. */
  snapshot (): StateSnapshot {
    return { epoch: this.dataEpoch, revision: this.dataRev, records: new Map(this.mirror) }
  }

  private markSynced (): void {
    this.confirmedAt = Date.now()
    this.ctx.onSynced()
  }

  /** After a reconnect or an idle read: is the feed we follow still the store's? */
  async check (idle: boolean, escalate = true): Promise<void> {
    const { ctx } = this
    const reply = await ctx.cmd.call('MGET', [ctx.keys.epoch, ctx.keys.rev])
    ctx.life.verified()
    const [epoch, revText] = Array.isArray(reply) ? reply as unknown[] : []
    if (revText == null) await ctx.cmd.call('GET', [ctx.keys.rev]) // nil from MGET may be a key of another type: GET says WRONGTYPE
    const storeEpoch = typeof epoch === 'string' ? epoch : ''
    const rev = parseRevision(revText, ctx.keys.rev)
    if (storeEpoch !== this.watchEpoch || rev < this.lastRev) {
      ctx.log.warn({ redis: ctx.where, epoch: storeEpoch, revision: rev, following: this.lastRev }, 'the store was reset or rolled back; relisting')
      // Every follower sees this at once: spread their relists (each one is read in slices anyway).
      await sleep(Math.random() * Math.min(2000, ctx.syncPeriodMs / 10))
      ctx.life.mustList()
      return
    }
    if (!idle) {
      ctx.stats.resumes++
      ctx.log.info({ revision: this.lastRev }, 'resuming the watch where it stopped')
    } else if (rev > this.lastRev) {
      // The feed may be gone while the counter moved on; a write may also just have landed, or
      // a revision in parts be arriving (not suspect while its parts come in).
      if (this.partial !== null && this.partial.rev === rev) return
      // Only a watch read that came back empty may confirm a suspicion (the resync may run right after one).
      if (!escalate) return
      if (this.suspectRev !== 0 && rev >= this.suspectRev) {
        ctx.log.warn({ revision: rev, following: this.lastRev }, 'the feed does not deliver revisions the store has; relisting')
        ctx.life.mustList()
      }
      this.suspectRev = rev
      return
    }
    this.suspectRev = 0
    if (!ctx.life.guarded && !ctx.life.servingFile) this.confirmedAt = Date.now()
  }

  async relist (): Promise<void> {
    const { ctx } = this
    await ctx.proxy.retryFailedListeners() // every resync and SIGHUP also rebinds listeners in error
    const snap = await readSnapshot(ctx.cmd, ctx.keys)
    ctx.stats.lists++
    ctx.life.snapshotRead()
    this.suspectRev = 0
    this.nextResyncAt = Date.now() + jittered(ctx.syncPeriodMs)

    if (snap.records.size === 0 && this.mirror.size > 0 && snap.epoch !== this.dataEpoch) {
      // A restart without persistence (or a flush) would otherwise blackhole every node at once.
      if (!ctx.life.guarded) {
        ctx.log.error({ redis: ctx.where, servedRevision: this.dataRev, objects: this.mirror.size },
          'THE STORE IS EMPTY after having held data (restarted without persistence?). NOT applying it: still serving the last known state until the store holds data again. Explicit deletes are still obeyed.')
      }
      if (snap.epoch !== this.watchEpoch) this.setPosition(0) // replay the new store's feed: its deletes count
      ctx.life.guard()
      this.watchEpoch = snap.epoch
      this.markSynced()
      return
    }
    if (ctx.life.guarded) {
      ctx.log.warn({ revision: snap.revision, objects: snap.records.size }, 'the store holds data again: converging to it')
      ctx.life.unguard()
    }

    const upserts: KubeObject[] = []
    const deletes: ObjectRef[] = []
    const next = new Map<string, string>()
    for (const [key, text] of snap.records) {
      const prev = this.mirror.get(key)
      if (prev === text) { next.set(key, text); continue }
      const obj = this.writer.decode(key, text, snap.revision)
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
    const wasFromFile = ctx.life.servingFile
    const firstList = ctx.stats.lists === 1
    this.mirror = next
    const changed = await this.writer.write(upserts, deletes, snap.revision)
    if (!firstList && !wasFromFile && changed > 0) {
      ctx.log.warn({ revision: snap.revision, changed }, 'relist found differences with the served state; repaired')
    }
    this.dataEpoch = this.watchEpoch = snap.epoch
    this.dataRev = snap.revision
    this.setPosition(snap.revision)
    ctx.life.listApplied()
    this.markSynced()
    ctx.log.info({ revision: snap.revision, objects: next.size, changed }, 'listed the store')
    ctx.onApplied?.({ via: 'list', revision: snap.revision, changed })
    ctx.saveState()
  }

  async applyEntries (reply: unknown): Promise<void> {
    const { ctx } = this
    this.suspectRev = 0
    const batch = { from: 0, revisions: 0, puts: 0, deletes: 0, changed: 0 }
    for (const [id, fields] of feedEntries(reply)) {
      const part = partOfId(id)
      let rev: number
      let entry: FeedEntry | undefined
      let foreign = ''
      let piece: FeedEntry | undefined
      if (part !== null && !this.distrusted.has(id)) {
        try { piece = decodeEntry(fields) } catch { /* not a part: foreign, below */ }
      }
      if (part !== null && piece !== undefined && piece.part === part.part) {
        // A later part of a revision written in parts: gathered, then applied whole with its last part.
        const p = this.partial
        this.feedCursor = id
        if (p === null || p.rev !== part.rev || part.part !== p.got + 1) continue // one a relist already covered
        p.ops.push(...piece.ops)
        if (++p.got < p.want) continue
        this.partial = null
        rev = p.rev
        entry = { epoch: p.epoch, ops: p.ops, parts: 0, part: 0 }
      } else {
        rev = revOfId(id)
        if (this.distrusted.has(id) || rev <= this.lastRev) { this.feedCursor = id; continue }
        if (Number.isNaN(rev)) foreign = 'its id is not REVISION-0'
        else {
          try { entry = decodeEntry(fields) } catch (err) { foreign = (err as Error).message }
        }
      }
      if (entry === undefined) {
        // Not svcproxy's: the list is the truth. Logged once; read again after the relist, skipped.
        ctx.log.error({ key: `${ctx.keys.feed} ${id}`, err: foreign }, 'feed entry not written by svcproxy; relisting, and skipping it from now on')
        this.distrust(id)
        ctx.life.mustList()
        break
      }
      if (rev !== this.lastRev + 1 && !ctx.life.guarded) {
        if (this.suspect(id, { following: this.lastRev, next: rev }, 'the feed no longer holds the next revision (trimmed); relisting')) {
          ctx.stats.gaps++
          break
        }
        continue
      }
      if (entry.epoch !== this.watchEpoch) {
        if (ctx.life.guarded && this.watchEpoch === '') {
          this.watchEpoch = entry.epoch // the wiped store's first write
        } else if (this.suspect(id, { revision: rev }, 'feed entry from another store epoch; relisting')) {
          break
        } else {
          continue
        }
      }
      if (entry.parts > 0) {
        this.partial = { rev, want: entry.parts, got: 0, ops: [], epoch: entry.epoch }
        this.feedCursor = id
        continue
      }
      const puts = entry.ops.filter((o) => o.op === 'put').length
      if (ctx.life.guarded && puts > 0) {
        await sleep(Math.random() * Math.min(2000, ctx.syncPeriodMs / 10)) // the whole fleet sees this write: spread the relists
        ctx.life.mustList()
        break
      }
      if (batch.revisions++ === 0) batch.from = rev
      batch.puts += puts
      batch.deletes += entry.ops.length - puts
      if (ctx.life.guarded) {
        this.setPosition(rev)
        batch.changed += await this.applyOps(entry.ops, this.dataRev)
        continue
      }
      const changed = await this.applyOps(entry.ops, rev)
      batch.changed += changed
      this.setPosition(rev)
      if (part !== null) this.feedCursor = id // after its last part
      this.dataRev = rev
      ctx.stats.entries++
      ctx.onApplied?.({ via: 'watch', revision: rev, changed })
    }
    if (batch.revisions > 0) {
      ctx.log.info({ revision: this.lastRev, ...batch }, batch.revisions === 1 ? 'applied a store revision' : 'applied store revisions')
    }
    if (!ctx.life.guarded) this.confirmedAt = Date.now()
    ctx.saveState()
  }

  /**
   * An entry the feed's order cannot vouch for (a gap, another epoch): relist, the list being the
   * truth. The same entry read again right after that relist is ahead of the store's revision or
   * of another epoch, which svcproxy never writes: logged once more, then skipped. False: skip it.
   */
  private suspect (id: string, fields: Record<string, unknown>, msg: string): boolean {
    const { ctx } = this
    if (!this.distrusted.has(id) && this.relistedFor !== id) {
      ctx.log.warn(fields, msg)
      this.relistedFor = id
      ctx.life.mustList()
      return true
    }
    ctx.log.error({ key: `${ctx.keys.feed} ${id}`, ...fields }, 'feed entry not written by svcproxy (read again after a relist); skipping it from now on')
    this.distrust(id)
    this.feedCursor = id
    return false
  }

  private distrust (id: string): void {
    this.distrusted.add(id)
    // Bounded: an entry older than the cursor is never read again anyway.
    for (const old of this.distrusted) {
      if (this.distrusted.size <= 1000) break
      this.distrusted.delete(old)
    }
  }

  /** The feed position: the last revision read, and the next read starts after it. */
  private setPosition (rev: number): void {
    this.partial = null
    this.lastRev = rev
    this.feedCursor = `${rev}-0`
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
      const obj = this.writer.decode(op.key, op.obj, rev)
      if (obj === undefined) continue
      upserts.push(obj)
      this.mirror.set(op.key, op.obj)
    }
    return await this.writer.write(upserts, deletes, rev)
  }

  /** Serves the last-known-good snapshot until the store is listed. */
  async loadStateFile (path: string): Promise<void> {
    const { ctx } = this
    let snap
    try {
      snap = await readStateFile(path)
    } catch (err) {
      ctx.log.error({ stateFile: path, err: (err as Error).message }, 'state file unreadable; ignoring it')
      return
    }
    if (snap === null) return
    const upserts: KubeObject[] = []
    for (const [key, text] of snap.records) {
      const obj = this.writer.decode(key, text, snap.revision)
      if (obj === undefined) continue
      upserts.push(obj)
      this.mirror.set(key, text)
    }
    const changed = await this.writer.write(upserts, [], snap.revision)
    this.dataEpoch = this.watchEpoch = snap.epoch
    this.dataRev = snap.revision
    this.setPosition(snap.revision)
    ctx.life.stateFileLoaded() // serving something; health says stale until the store confirms it
    ctx.log.warn({ stateFile: path, revision: snap.revision, objects: this.mirror.size }, 'serving the state file until the store is listed')
    ctx.onApplied?.({ via: 'state-file', revision: snap.revision, changed })
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The period, ±10%. */
function jittered (ms: number): number {
  return ms * (0.9 + 0.2 * Math.random())
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
