// The writer: the API server's role. Validates, allocates and commits whole batches to Redis
// with optimistic concurrency, so every node following the store sees the same objects.

import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { DEFAULTS } from '../defaults.js'
import { StoreError, ValidationError, type ValidationIssue } from '../errors.js'
import { parseDocument, readDocumentFile } from '../model/document.js'
import { type KubeObject, type Service, objectKey, objectRef } from '../model/types.js'
import { type ObjectRef, parseRef } from '../table/refs.js'
import { type RedisClient, type RedisTlsFiles, closeClient, createClient, describeStoreError, isNotConnected, isServerRefusal, redactUrl } from './connect.js'
import { claimsOf, digestOf, hmgetSlices, planTable } from './indexes.js'
import { type StoredRecord, decodeRecord, recordsOf, withAllocations } from './records.js'
import { DEFAULT_FEED_MAX_LEN, DEFAULT_PREFIX, SCHEMA_VERSION, type FeedOp, type StoreKeys, corruptKeys, parseRevision, storeKeys } from './schema.js'
import { APPLY_NEXT_SCRIPT, COMMIT_SCRIPT, INDEX_SCRIPT, scriptKeys, sliceTriples } from './scripts.js'
import { type StoreSnapshot, readSnapshot } from './snapshot.js'

export interface StoreOptions {
  /** redis://, rediss://, redis+sentinel://, redis+cluster:// (see connect.ts). Ignored when `client` is given. */
  url?: string
  /** An existing connection to share; the store does not close it. */
  client?: RedisClient
  /** Key prefix, default `{svcproxy}:`. */
  prefix?: string
  /** --service-cluster-ip-range / --service-node-port-range for allocation, as on the daemons. */
  serviceClusterIPRange?: string
  serviceNodePortRange?: string
  /** Feed length kept (MAXLEN ~), default 10,000 revisions. */
  feedMaxLen?: number
  /** How often a batch is re-validated after losing a race with another writer, default 50. */
  maxConflictRetries?: number
  /**
   * Default true: while Redis is unreachable a call fails after a few reconnect attempts
   * instead of waiting; the next call reconnects. false: reconnect in the background forever.
   */
  failFast?: boolean
  /** PEM files for a rediss:// store (connect.ts). Ignored when `client` is given. */
  tls?: RedisTlsFiles
}

export type ChangeAction = 'created' | 'configured' | 'unchanged' | 'deleted' | 'not found'

export interface StoreWriteResult {
  /** Revision the batch landed at; the current revision when nothing changed. */
  revision: number
  changes: Array<{ key: string, action: ChangeAction }>
  /** Skipped kinds, and stored records that could not be read (by key). */
  warnings: string[]
}

export type { StoreSnapshot }

interface Head {
  epoch: string
  revision: number
  /** A large commit is still being copied into the hashes. */
  applying: boolean
  schema: string
}

interface Plan {
  ops: FeedOp[]
  /** Index changes committed with the ops, as (op, a, b) triples: allocations freed first, then the rest. */
  frees: string[]
  index: string[]
  /** Index fields of unchanged records (digests an older svcproxy did not write). */
  backfill: string[]
  changes: StoreWriteResult['changes']
  warnings: string[]
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export class RedisStore {
  readonly keys: StoreKeys
  readonly client: RedisClient
  private readonly owned: boolean
  private readonly opts: StoreOptions
  /** Last connection error, in words: a command sent while disconnected only says "not connected". */
  private lastConnError = ''
  /** Stored services already validated, by key, with the text they were parsed from. */
  private parsed = new Map<string, { text: string, obj: KubeObject }>()

  constructor (opts: StoreOptions) {
    this.opts = opts
    this.keys = storeKeys(opts.prefix ?? DEFAULT_PREFIX)
    if (opts.client !== undefined) {
      this.client = opts.client
      this.owned = false
    } else {
      if (opts.url === undefined) throw new StoreError('SVCPROXY_STORE_UNAVAILABLE', 'no Redis URL given (--redis or REDIS_URL)')
      this.client = createClient(opts.url, { connectionName: 'svcproxy-writer', failFast: opts.failFast ?? true, tls: opts.tls })
      this.owned = true
    }
    this.client.on('error', (err: Error) => { this.lastConnError = describeStoreError(err) })
    this.client.on('ready', () => { this.lastConnError = '' })
  }

  /**
   * `kubectl apply` for a whole document: validated like the file source, each object created
   * or replaced, the others untouched. All objects land at one revision, or none does. Redis
   * reads the digests of the document's records and the records that changed, and writes those.
   */
  async apply (document: unknown, file = '<apply>'): Promise<StoreWriteResult> {
    const { records, warnings } = recordsOf(document, file)
    const seen = new Set<string>()
    const dups: ValidationIssue[] = []
    for (const r of records) {
      if (seen.has(r.key)) dups.push({ file, object: objectRef(r.obj), path: '', message: 'appears more than once in this batch' })
      seen.add(r.key)
    }
    if (dups.length > 0) throw new ValidationError(dups)
    const keys = records.map((r) => r.key)
    const inputs = records.map((r) => JSON.stringify(r.raw))
    const inputSha = inputs.map(digestOf)
    return await this.commit(async () => {
      const plan: Plan = { ops: [], frees: [], index: [], backfill: [], changes: keys.map((key) => ({ key, action: 'unchanged' as ChangeAction })), warnings: [...warnings] }
      const digests = await hmgetSlices(this.client, this.keys.digest, keys)
      const cand: number[] = []
      records.forEach((r, i) => {
        const d = digests[i]
        if (d == null || (r.obj.kind === 'Service' ? d.split(':')[1] !== inputSha[i] : d !== inputSha[i])) cand.push(i)
      })
      if (cand.length === 0) return plan
      const prevTexts = await hmgetSlices(this.client, this.keys.objects, cand.map((i) => keys[i] ?? ''))
      const prev = new Map<number, string | null>(cand.map((i, j) => [i, prevTexts[j] ?? null]))
      const { table, prevSvcs } = await planTable({ client: this.client, allocKey: this.keys.alloc, parsed: this.parsed, clusterIPRange: this.opts.serviceClusterIPRange ?? DEFAULTS.serviceClusterIPRange, nodePortRange: this.opts.serviceNodePortRange ?? DEFAULTS.serviceNodePortRange }, cand.map((i) => records[i] as StoredRecord), cand.map((i) => prev.get(i) ?? null), plan.warnings, file)
      for (const i of cand) {
        const r = records[i] as StoredRecord
        const before = prev.get(i) ?? null
        let text = inputs[i] ?? ''
        let digest = inputSha[i] ?? ''
        let svc: Service | undefined
        if (r.obj.kind === 'Service') {
          svc = table.services.get(`${r.obj.namespace}/${r.obj.name}`)
          if (svc === undefined) throw new Error(`internal: ${r.key} not planned`)
          text = JSON.stringify(withAllocations(r.raw, svc))
          digest = `${digestOf(text)}:${inputSha[i] ?? ''}`
        }
        if (before === text) {
          if (digests[i] !== digest) plan.backfill.push('dset', r.key, digest)
          continue
        }
        plan.ops.push({ op: 'put', key: r.key, obj: text })
        plan.changes[i] = { key: r.key, action: before === null ? 'created' : 'configured' }
        plan.index.push('dset', r.key, digest)
        if (svc !== undefined) {
          const owner = `${svc.namespace}/${svc.name}`
          const now = claimsOf(svc)
          for (const c of claimsOf(prevSvcs.get(r.key) ?? svc)) if (!now.includes(c)) plan.frees.push('adel', c, owner)
          for (const c of now) plan.index.push('aset', c, owner)
        }
      }
      return plan
    })
  }

  /** apply() for a file: read once, so the validated text and the stored objects are the same bytes. */
  async applyFile (path: string): Promise<StoreWriteResult> {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      // readDocumentFile words every read failure (missing, directory, too large) the way `validate` does.
      await readDocumentFile(path)
      throw err
    }
    parseDocument(text, path) // same messages as the file source: line and column of a JSON error
    return await this.apply(JSON.parse(text.replace(/^\uFEFF/, '')), path)
  }

  /**
   * Deletes by reference. An absent object still gets its delete recorded in the feed: nodes
   * that kept serving a remembered state after a store wipe obey explicit deletes.
   */
  async delete (refs: Array<ObjectRef | string>): Promise<StoreWriteResult> {
    const keys = [...new Set(refs.map((r) => objectKey(typeof r === 'string' ? parseRef(r) : r)))]
    return await this.commit(async () => {
      const prev = await hmgetSlices(this.client, this.keys.objects, keys)
      const plan: Plan = { ops: [], frees: [], index: [], backfill: [], changes: [], warnings: [] }
      keys.forEach((key, i) => {
        const text = prev[i] ?? null
        plan.ops.push({ op: 'del', key })
        plan.changes.push({ key, action: text === null ? 'not found' : 'deleted' })
        plan.index.push('ddel', key, '')
        if (text === null || !key.startsWith('Service/')) return
        try {
          const svc = decodeRecord(key, text)
          if (svc.kind === 'Service') for (const c of claimsOf(svc)) plan.frees.push('adel', c, `${svc.namespace}/${svc.name}`)
        } catch { /* an unreadable record holds no allocation */ }
      })
      return plan
    })
  }

  /** `delete -f FILE`: every object the (valid) file names. */
  async deleteFile (path: string): Promise<StoreWriteResult> {
    const doc = await readDocumentFile(path)
    return await this.delete(doc.objects.map((o) => ({ kind: o.kind, namespace: o.namespace, name: o.name })))
  }

  /** Everything stored, read at one revision (in slices: see snapshot.ts). */
  async snapshot (): Promise<StoreSnapshot> {
    return await this.run(async () => await readSnapshot(this.client, this.keys))
  }

  /** The snapshot decoded; records that fail validation come back in `bad` with their key. */
  async list (): Promise<{ revision: number, objects: Array<{ key: string, obj: KubeObject, text: string }>, bad: Array<{ key: string, error: string }> }> {
    const snap = await this.snapshot()
    const objects: Array<{ key: string, obj: KubeObject, text: string }> = []
    const bad: Array<{ key: string, error: string }> = []
    for (const [key, text] of snap.records) {
      try {
        objects.push({ key, obj: decodeRecord(key, text), text })
      } catch (err) {
        bad.push({ key, error: (err as Error).message })
      }
    }
    objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    return { revision: snap.revision, objects, bad }
  }

  async close (): Promise<void> {
    if (this.owned) await closeClient(this.client)
  }

  private async head (): Promise<Head> {
    const k = this.keys
    const reply = await this.client.call('MGET', [k.epoch, k.rev, k.applying, k.schema])
    const [epoch, rev, applying, schema] = Array.isArray(reply) ? reply as unknown[] : []
    if (rev == null) await this.client.call('GET', [k.rev]) // MGET answers nil for a key of another type; GET says WRONGTYPE
    return { epoch: str(epoch), revision: parseRevision(rev, k.rev), applying: applying != null, schema: str(schema) }
  }

  /** Stages the slices of a large commit (each with its part of the feed ops), expiring unless committed. */
  private async stage (staging: string, slices: string[][]): Promise<void> {
    for (const [i, t] of slices.entries()) {
      const ops: FeedOp[] = []
      for (let j = 0; j + 2 < t.length; j += 3) {
        if (t[j] === 'put') ops.push({ op: 'put', key: t[j + 1] ?? '', obj: t[j + 2] ?? '' })
        else if (t[j] === 'del') ops.push({ op: 'del', key: t[j + 1] ?? '' })
      }
      await this.client.call('RPUSH', [staging, JSON.stringify({ n: i + 1, ops: JSON.stringify(ops), t })])
    }
    await this.client.call('EXPIRE', [staging, 3600])
  }

  private runScript (script: string, args: Array<string | number>, extraKeys: string[] = []): Promise<unknown> {
    const keys = [...scriptKeys(this.keys), ...extraKeys]
    return this.client.call('EVAL', [script, keys.length, ...keys, ...args])
  }

  /** Read, plan, commit-if-unchanged; on a lost race re-read and re-plan (allocations may differ). */
  private async commit (plan: (h: Head) => Promise<Plan>): Promise<StoreWriteResult> {
    const max = this.opts.maxConflictRetries ?? 50
    for (let attempt = 0; attempt <= max; attempt++) {
      const head = await this.run(() => this.head())
      if (head.applying) { await this.run(() => this.finishPending()); continue }
      if (head.schema !== SCHEMA_VERSION && await this.run(() => this.client.call('EXISTS', [this.keys.objects])) === 1) {
        await this.run(() => this.migrate(head.revision))
        continue
      }
      const p = await this.run(() => plan(head))
      if (p.ops.length === 0) {
        for (const slice of sliceTriples(p.backfill)) await this.run(() => this.runScript(INDEX_SCRIPT, [head.revision, '0', ...slice]))
        return { revision: head.revision, changes: p.changes, warnings: p.warnings }
      }
      const triples = [...p.frees]
      for (const op of p.ops) triples.push(op.op, op.key, op.op === 'put' ? op.obj : '')
      triples.push(...p.index, ...p.backfill)
      const slices = sliceTriples(triples)
      const big = slices.length > 1
      const args: Array<string | number> = [head.revision, head.epoch, head.epoch === '' ? randomBytes(8).toString('hex') : head.epoch,
        this.opts.feedMaxLen ?? DEFAULT_FEED_MAX_LEN, big ? '[]' : JSON.stringify(p.ops)]
      // Small: one script. Large: the slices are staged first (one RPUSH each), the revision
      // commits in one short script, and the copy into the hashes (and the feed) goes slice by slice.
      let staging = ''
      if (big) {
        staging = `${this.keys.pending}:${randomBytes(8).toString('hex')}`
        await this.run(() => this.stage(staging, slices))
        args.push('stage', slices.length)
      } else {
        args.push('apply', ...triples)
      }
      const res = await this.run(() => this.runScript(COMMIT_SCRIPT, args, big ? [staging] : []))
      if (big && typeof res !== 'number') await this.client.call('DEL', [staging]).catch(() => {})
      if (typeof res === 'number') {
        if (slices.length > 1) await this.run(() => this.finishPending())
        return { revision: res, changes: p.changes, warnings: p.warnings }
      }
      // Lost the race: another writer committed in between. Jitter so two writers do not collide again.
      await sleep(Math.floor(Math.random() * Math.min(50, 2 + attempt * 5)))
    }
    throw new StoreError('SVCPROXY_STORE_CONFLICT', `gave up after ${max + 1} attempts: other writers kept changing the store`)
  }

  /** Copies what a large commit (this writer's, or one that died half-way) left pending. */
  private async finishPending (): Promise<void> {
    while (await this.runScript(APPLY_NEXT_SCRIPT, []) === 1) { /* one slice per script */ }
  }

  /**
   * Schema 1 → 2: builds the digest and alloc indexes from the stored records, in slices, at one
   * revision (a write in between: the caller re-reads and migrates again).
   */
  private async migrate (rev: number): Promise<void> {
    await this.client.call('UNLINK', [this.keys.digest, this.keys.alloc])
    const snap = await readSnapshot(this.client, this.keys)
    if (snap.revision !== rev) return
    const triples: string[] = []
    for (const [key, text] of snap.records) {
      if (!key.startsWith('Service/')) { triples.push('dset', key, digestOf(text)); continue }
      triples.push('dset', key, `${digestOf(text)}:`)
      try {
        const svc = decodeRecord(key, text)
        if (svc.kind === 'Service') for (const c of claimsOf(svc)) triples.push('aset', c, `${svc.namespace}/${svc.name}`)
      } catch { /* unreadable: no allocation */ }
    }
    const slices = sliceTriples(triples)
    if (slices.length === 0) slices.push([])
    for (let i = 0; i < slices.length; i++) {
      if (await this.runScript(INDEX_SCRIPT, [rev, i === slices.length - 1 ? '1' : '0', ...(slices[i] ?? [])]) !== 1) return
    }
  }

  /** Maps failures to StoreError in plain words, naming the server without the URL's password (and a corrupt key by name). */
  private async run<T> (fn: () => Promise<T>): Promise<T> {
    if (this.owned && this.client.status === 'end') {
      // failFast gave up on an earlier outage (or a failover): each call tries afresh, so a
      // long-lived store recovers; with Sentinel this asks the sentinels for the master again.
      try { await this.client.connect() } catch { /* the command below reports why */ }
    }
    try {
      return await fn()
    } catch (err) {
      if (err instanceof ValidationError) throw err
      const store = this.opts.url === undefined ? 'the store' : `the store at ${redactUrl(this.opts.url)}`
      if (err instanceof StoreError) {
        if (err.code !== 'SVCPROXY_STORE_CORRUPT') throw err
        throw new StoreError('SVCPROXY_STORE_CORRUPT', `${store} is corrupt: ${err.message}. Restore that key or delete it`, { cause: err })
      }
      const e = err as Error
      // A reply error other than the server's own state (auth, loading, failover) is the server
      // refusing the data: WRONGTYPE on a key svcproxy did not write. The error names no key.
      if (e.name === 'ReplyError' && !isServerRefusal(e)) {
        const found = await corruptKeys(this.client, this.keys).catch(() => [])
        const what = found.length > 0 ? found.map((f) => f.problem).join('; ') : describeStoreError(e)
        throw new StoreError('SVCPROXY_STORE_CORRUPT', `${store} is corrupt: ${what}. Restore that key or delete it`, { cause: err })
      }
      if (/^(NOAUTH|WRONGPASS)/.test(e.message)) {
        throw new StoreError('SVCPROXY_STORE_UNAVAILABLE', `${store} refused the login: ${describeStoreError(e)}`, { cause: err })
      }
      const why = isNotConnected(e) && this.lastConnError !== '' ? this.lastConnError : describeStoreError(e)
      throw new StoreError('SVCPROXY_STORE_UNAVAILABLE', `cannot reach ${store}: ${why}`, { cause: err })
    }
  }
}

function str (v: unknown): string {
  return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : ''
}

export function createStore (opts: StoreOptions): RedisStore {
  return new RedisStore(opts)
}
