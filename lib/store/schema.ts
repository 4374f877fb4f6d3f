// The store's layout in Redis (docs/redis.md is the prose version of this file).
// Writers (lib/store/store.ts) and readers (lib/sources/redis.ts) share only this.

import { DEFAULTS } from '../defaults.js'
import { StoreError } from '../errors.js'
import type { ObjectKind } from '../model/types.js'
import type { ObjectRef } from '../table/refs.js'
import type { RedisClient } from './connect.js'

/**
 * The braces are a Cluster hash tag: every key lands in one slot, so one Lua script may touch
 * them all (Cluster refuses multi-key scripts across slots). Harmless on a standalone server.
 */
export const DEFAULT_PREFIX: string = DEFAULTS.redisKeyPrefix

/** Feed entries kept (approximately: MAXLEN ~). A reader further behind than this relists. */
export const DEFAULT_FEED_MAX_LEN = 10_000

export interface StoreKeys {
  /** HASH `Kind/namespace/name` → the object as raw Kubernetes JSON, validated and allocated. */
  objects: string
  /** STRING: the store revision, +1 per committed write; never decreases while the store lives. */
  rev: string
  /** STREAM: one entry per revision, id `REV-0`, fields `epoch` and `ops` (JSON FeedOp[]). */
  feed: string
  /** STRING: random id set by the first write; a new value means the store was wiped and re-created. */
  epoch: string
  /**
   * Schema 2 (writers only; readers need none of it). HASH `Kind/namespace/name` → digest of the
   * stored text (`sha`), for a Service `sha:inputSha` (the applied JSON before allocation), so a
   * writer finds what a document changes without reading the records it does not change.
   */
  digest: string
  /** Schema 2. HASH `ip/ADDRESS` | `port/NUMBER` → `namespace/name` of the Service holding it. */
  alloc: string
  /** STRING: the revision a large commit is still copying into `objects` (absent: none). */
  applying: string
  /** LIST: the slices of that commit not copied yet (JSON arrays of [op, a, b] triples). */
  pending: string
  /** STRING: the schema version, "2" ("1" or absent: written before the digest and alloc indexes). */
  schema: string
}

/** The schema version this code writes (see docs/redis.md, "Schema"). */
export const SCHEMA_VERSION = '2'

export function storeKeys (prefix = DEFAULT_PREFIX): StoreKeys {
  return {
    objects: `${prefix}objects`,
    rev: `${prefix}rev`,
    feed: `${prefix}feed`,
    epoch: `${prefix}epoch`,
    digest: `${prefix}digest`,
    alloc: `${prefix}alloc`,
    applying: `${prefix}applying`,
    pending: `${prefix}pending`,
    schema: `${prefix}schema`,
  }
}

/** The Redis type each key holds when svcproxy wrote it (an absent key is fine too). */
export const KEY_TYPES: Readonly<Record<keyof StoreKeys, string>> = {
  objects: 'hash', rev: 'string', feed: 'stream', epoch: 'string', digest: 'hash', alloc: 'hash', applying: 'string', pending: 'list', schema: 'string',
}

/** The revision key's value (null: never written = 0); anything but a whole number is corruption. */
export function parseRevision (value: unknown, key: string): number {
  const text = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : value == null ? '0' : String(value)
  const n = Number(text)
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new StoreError('SVCPROXY_STORE_CORRUPT', `${key} holds ${JSON.stringify(text.slice(0, 40))}, not a revision number`)
  }
  return n
}

/**
 * The keys that hold something svcproxy did not write: a Redis type other than its own (a
 * WRONGTYPE error inside a script names no key, so the keys are checked one by one), or a
 * revision that is not a number. One sentence per key, naming it.
 */
export async function corruptKeys (client: RedisClient, keys: StoreKeys): Promise<Array<{ key: string, problem: string }>> {
  const found: Array<{ key: string, problem: string }> = []
  for (const name of Object.keys(KEY_TYPES) as Array<keyof StoreKeys>) {
    const key = keys[name]
    const want = KEY_TYPES[name]
    const type = await client.type(key)
    if (type !== 'none' && type !== want) {
      found.push({ key, problem: `${key} holds a Redis ${type} where svcproxy keeps a ${want}` })
    } else if (name === 'rev' && type === 'string') {
      try { parseRevision(await client.get(key), key) } catch (err) { found.push({ key, problem: (err as Error).message }) }
    }
  }
  return found
}

/** One change inside a revision. `obj` is the stored JSON text (puts only). */
export type FeedOp = { op: 'put', key: string, obj: string } | { op: 'del', key: string }

const KINDS: ReadonlySet<string> = new Set<ObjectKind>(['Service', 'Endpoints', 'EndpointSlice', 'Pod'])

/** `Kind/namespace/name` → ref; null for anything else (a hand-written field). */
export function refOfKey (key: string): ObjectRef | null {
  const parts = key.split('/')
  if (parts.length !== 3 || !KINDS.has(parts[0] ?? '') || parts[1] === '' || parts[2] === '') return null
  return { kind: parts[0] as ObjectKind, namespace: parts[1] ?? '', name: parts[2] ?? '' }
}

/** The revision of a feed entry id `REV-0`; NaN when the id was not written by svcproxy (or is a later part). */
export function revOfId (id: string): number {
  const m = /^(\d+)-0$/.exec(id)
  return m === null ? Number.NaN : Number(m[1])
}

/** A later part `REV-N` (N ≥ 1) of a revision written in parts; null for anything else. */
export function partOfId (id: string): { rev: number, part: number } | null {
  const m = /^(\d+)-([1-9]\d*)$/.exec(id)
  return m === null ? null : { rev: Number(m[1]), part: Number(m[2]) }
}

export interface FeedEntry {
  /** The store epoch the entry was written in: a reader following another epoch must relist. */
  epoch: string
  ops: FeedOp[]
  /** Schema 2: a large revision's ops follow in entries REV-1..REV-parts (0: all are here). */
  parts: number
  /** Schema 2: in entry REV-N of such a revision, N (0 in REV-0). */
  part: number
}

/** Decodes an entry's fields; throws on anything malformed (the caller logs the entry id and relists). */
export function decodeEntry (fields: unknown): FeedEntry {
  if (!Array.isArray(fields)) throw new Error('entry fields are not a list')
  let text: unknown
  let epoch: unknown = ''
  let parts = 0
  let part = 0
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'ops') text = fields[i + 1]
    else if (fields[i] === 'epoch') epoch = fields[i + 1]
    else if (fields[i] === 'parts') parts = Number(fields[i + 1])
    else if (fields[i] === 'part') part = Number(fields[i + 1])
  }
  if (!Number.isSafeInteger(part) || part < 0) throw new Error('entry has a "part" field that is not a number')
  if (!Number.isSafeInteger(parts) || parts < 0) throw new Error('entry has a "parts" field that is not a count')
  if (typeof text !== 'string') throw new Error('entry has no "ops" field')
  if (typeof epoch !== 'string') throw new Error('entry has a non-string "epoch" field')
  const ops: unknown = JSON.parse(text)
  if (!Array.isArray(ops)) throw new Error('"ops" is not a JSON array')
  return {
    epoch,
    parts,
    part,
    ops: ops.map((o: unknown, i): FeedOp => {
      if (typeof o !== 'object' || o === null) throw new Error(`ops[${i}] is not an object`)
      const r = o as Record<string, unknown>
      if (typeof r.key !== 'string') throw new Error(`ops[${i}].key is not a string`)
      if (r.op === 'del') return { op: 'del', key: r.key }
      if (r.op === 'put' && typeof r.obj === 'string') return { op: 'put', key: r.key, obj: r.obj }
      throw new Error(`ops[${i}] is neither {op:"put",key,obj} nor {op:"del",key}`)
    }),
  }
}
