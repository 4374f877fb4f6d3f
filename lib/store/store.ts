// The writer: the API server's role. Validates, allocates and commits whole batches to Redis
// with optimistic concurrency, so every node following the store sees the same objects.

import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { StoreError, ValidationError } from '../errors.js'
import { parseDocument, readDocumentFile } from '../model/document.js'
import { type KubeObject, objectKey } from '../model/types.js'
import { type ObjectRef, parseRef } from '../table/refs.js'
import { Table } from '../table/table.js'
import { type RedisClient, type RedisTlsFiles, closeClient, createClient, describeStoreError, isNotConnected, isServerRefusal, redactUrl } from './connect.js'
import { decodeRecord, recordsOf, withAllocations } from './records.js'
import { COMMIT_SCRIPT, DEFAULT_FEED_MAX_LEN, DEFAULT_PREFIX, LIST_SCRIPT, READ_FOR_WRITE_SCRIPT, type FeedOp, type StoreKeys, corruptKeys, parseRevision, storeKeys } from './schema.js'

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

export interface StoreSnapshot {
  /** '' while nothing was ever written (or after the store was wiped). */
  epoch: string
  revision: number
  /** `Kind/ns/name` → stored JSON text, exactly as in Redis. */
  records: Map<string, string>
}

interface WriteState {
  epoch: string
  revision: number
  services: Map<string, string>
  /** Current text of the batch's own keys, null when absent. */
  mine: Array<string | null>
}

interface Plan {
  ops: FeedOp[]
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
   * or replaced, the others untouched. All objects land at one revision, or none does.
   */
  async apply (document: unknown, file = '<apply>'): Promise<StoreWriteResult> {
    const { records, warnings } = recordsOf(document, file)
    const keys = records.map((r) => r.key)
    return await this.commit(keys, (state) => {
      const table = this.tableOf(state, warnings)
      table.write(records.map((r) => r.obj), [], file) // throws ValidationError: nothing is written
      const plan: Plan = { ops: [], changes: [], warnings }
      records.forEach((r, i) => {
        const svc = r.obj.kind === 'Service' ? table.services.get(`${r.obj.namespace}/${r.obj.name}`) : undefined
        const text = JSON.stringify(svc === undefined ? r.raw : withAllocations(r.raw, svc))
        const prev = state.mine[i] ?? null
        if (prev === text) {
          plan.changes.push({ key: r.key, action: 'unchanged' })
          return
        }
        plan.ops.push({ op: 'put', key: r.key, obj: text })
        plan.changes.push({ key: r.key, action: prev === null ? 'created' : 'configured' })
      })
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
    return await this.commit(keys, (state) => ({
      ops: keys.map((key) => ({ op: 'del', key })),
      changes: keys.map((key, i) => ({ key, action: state.mine[i] == null ? 'not found' : 'deleted' })),
      warnings: [],
    }))
  }

  /** `delete -f FILE`: every object the (valid) file names. */
  async deleteFile (path: string): Promise<StoreWriteResult> {
    const doc = await readDocumentFile(path)
    return await this.delete(doc.objects.map((o) => ({ kind: o.kind, namespace: o.namespace, name: o.name })))
  }

  /** Everything stored, read at one revision. */
  async snapshot (): Promise<StoreSnapshot> {
    return await this.run(async () => parseListReply(await this.client.call('EVAL', [LIST_SCRIPT, 4, ...this.keyList()]), this.keys.rev))
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

  private keyList (): string[] {
    return [this.keys.objects, this.keys.rev, this.keys.epoch, this.keys.feed]
  }

  /** Read, plan, commit-if-unchanged; on a lost race re-read and re-plan (allocations may differ). */
  private async commit (batchKeys: string[], plan: (s: WriteState) => Plan): Promise<StoreWriteResult> {
    const max = this.opts.maxConflictRetries ?? 50
    for (let attempt = 0; attempt <= max; attempt++) {
      const state = await this.run(async () => parseWriteState(await this.client.call('EVAL', [READ_FOR_WRITE_SCRIPT, 4, ...this.keyList(), ...batchKeys]), this.keys.rev))
      const p = plan(state)
      if (p.ops.length === 0) return { revision: state.revision, changes: p.changes, warnings: p.warnings }
      const args: Array<string | number> = [COMMIT_SCRIPT, 4, ...this.keyList(),
        state.revision, state.epoch, state.epoch === '' ? randomBytes(8).toString('hex') : state.epoch,
        this.opts.feedMaxLen ?? DEFAULT_FEED_MAX_LEN, JSON.stringify(p.ops)]
      for (const op of p.ops) args.push(op.op, op.key, op.op === 'put' ? op.obj : '')
      const res = await this.run(() => this.client.call('EVAL', args))
      if (typeof res === 'number') return { revision: res, changes: p.changes, warnings: p.warnings }
      // Lost the race: another writer committed in between. Jitter so two writers do not collide again.
      await sleep(Math.floor(Math.random() * Math.min(50, 2 + attempt * 5)))
    }
    throw new StoreError('SVCPROXY_STORE_CONFLICT', `gave up after ${max + 1} attempts: other writers kept changing the store`)
  }

  /** A table holding the stored services, so the batch is checked and allocated against them. */
  private tableOf (state: WriteState, warnings: string[]): Table {
    const table = new Table({ serviceClusterIPRange: this.opts.serviceClusterIPRange, serviceNodePortRange: this.opts.serviceNodePortRange })
    const svcs: KubeObject[] = []
    const seen = new Map<string, { text: string, obj: KubeObject }>()
    for (const [key, text] of state.services) {
      try {
        // A long-lived writer (library, bench) re-reads the same services on every apply; parse each text once.
        const hit = this.parsed.get(key)
        const obj = hit !== undefined && hit.text === text ? hit.obj : decodeRecord(key, text)
        seen.set(key, { text, obj })
        svcs.push(obj)
      } catch (err) {
        warnings.push(`skipping unreadable stored record ${key}: ${(err as Error).message.split('\n').slice(1).join('; ') || (err as Error).message}`)
      }
    }
    this.parsed = seen
    try {
      table.write(svcs, [], 'redis')
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err
      // Stored services that conflict with each other (hand edits): keep the first of each clash.
      for (const s of svcs) {
        try { table.write([s], [], 'redis') } catch { warnings.push(`skipping conflicting stored record ${objectKey(s)}`) }
      }
    }
    return table
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

/** The list script's reply; `revKey` names the revision key when it holds something else than a number. */
export function parseListReply (reply: unknown, revKey: string): StoreSnapshot {
  if (!Array.isArray(reply) || reply.length !== 3 || !Array.isArray(reply[2])) {
    throw new StoreError('SVCPROXY_STORE_CORRUPT', 'unexpected reply to the list script')
  }
  const flat = reply[2] as unknown[]
  const records = new Map<string, string>()
  for (let i = 0; i + 1 < flat.length; i += 2) records.set(str(flat[i]), str(flat[i + 1]))
  return { epoch: str(reply[0]), revision: parseRevision(reply[1], revKey), records }
}

function parseWriteState (reply: unknown, revKey: string): WriteState {
  if (!Array.isArray(reply) || reply.length !== 4 || !Array.isArray(reply[2]) || !Array.isArray(reply[3])) {
    throw new StoreError('SVCPROXY_STORE_CORRUPT', 'unexpected reply to the read script')
  }
  const flat = reply[2] as unknown[]
  const services = new Map<string, string>()
  for (let i = 0; i + 1 < flat.length; i += 2) services.set(str(flat[i]), str(flat[i + 1]))
  const mine = (reply[3] as unknown[]).map((v) => (v === null || v === undefined ? null : str(v)))
  return { epoch: str(reply[0]), revision: parseRevision(reply[1], revKey), services, mine }
}

export function createStore (opts: StoreOptions): RedisStore {
  return new RedisStore(opts)
}
