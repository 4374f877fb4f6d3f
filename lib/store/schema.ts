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
}

export function storeKeys (prefix = DEFAULT_PREFIX): StoreKeys {
  return { objects: `${prefix}objects`, rev: `${prefix}rev`, feed: `${prefix}feed`, epoch: `${prefix}epoch` }
}

/** The Redis type each key holds when svcproxy wrote it (an absent key is fine too). */
export const KEY_TYPES: Readonly<Record<keyof StoreKeys, string>> = { objects: 'hash', rev: 'string', feed: 'stream', epoch: 'string' }

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

/** The revision of a feed entry id `REV-SEQ`; NaN when the id was not written by svcproxy. */
export function revOfId (id: string): number {
  const m = /^(\d+)-0$/.exec(id)
  return m === null ? Number.NaN : Number(m[1])
}

export interface FeedEntry {
  /** The store epoch the entry was written in: a reader following another epoch must relist. */
  epoch: string
  ops: FeedOp[]
}

/** Decodes an entry's fields; throws on anything malformed (the caller logs the entry id and relists). */
export function decodeEntry (fields: unknown): FeedEntry {
  if (!Array.isArray(fields)) throw new Error('entry fields are not a list')
  let text: unknown
  let epoch: unknown = ''
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'ops') text = fields[i + 1]
    else if (fields[i] === 'epoch') epoch = fields[i + 1]
  }
  if (typeof text !== 'string') throw new Error('entry has no "ops" field')
  if (typeof epoch !== 'string') throw new Error('entry has a non-string "epoch" field')
  const ops: unknown = JSON.parse(text)
  if (!Array.isArray(ops)) throw new Error('"ops" is not a JSON array')
  return {
    epoch,
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

/**
 * LIST: epoch, revision and every object, read atomically (one script runs alone), so the
 * snapshot is exactly the state at that revision. Returns {epoch|false, rev|false, flat HGETALL}.
 */
export const LIST_SCRIPT = `
return { redis.call('GET', KEYS[3]), redis.call('GET', KEYS[2]), redis.call('HGETALL', KEYS[1]) }
`

/**
 * What a writer needs to validate a batch: epoch, revision, every stored Service (for clusterIP
 * and nodePort uniqueness) and the current text of the batch's own keys (for created/unchanged).
 * ARGV: the batch's keys.
 */
export const READ_FOR_WRITE_SCRIPT = `
local all = redis.call('HGETALL', KEYS[1])
local svcs = {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 8) == 'Service/' then svcs[#svcs + 1] = all[i]; svcs[#svcs + 1] = all[i + 1] end
end
local mine = {}
-- In chunks: unpack() of thousands of values overflows the Lua stack.
for s = 1, #ARGV, 1000 do
  local chunk = {}
  for i = s, math.min(s + 999, #ARGV) do chunk[#chunk + 1] = ARGV[i] end
  for _, v in ipairs(redis.call('HMGET', KEYS[1], unpack(chunk))) do mine[#mine + 1] = v end
end
return { redis.call('GET', KEYS[3]), redis.call('GET', KEYS[2]), svcs, mine }
`

/**
 * COMMIT, all or nothing: only if the revision is still the one the batch was validated
 * against (optimistic concurrency, like resourceVersion). Every check runs before the first
 * write, because Redis does not roll a script back.
 * ARGV: expectedRev, expectedEpoch ('' = none yet), newEpoch, feedMaxLen, opsJson, then
 * (op, key, value) triples.
 * Returns the new revision, or {'conflict', currentRev}.
 */
export const COMMIT_SCRIPT = `
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = redis.call('GET', KEYS[3]) or ''
if cur ~= tonumber(ARGV[1]) or epoch ~= ARGV[2] then return { 'conflict', tostring(cur) } end
local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
if #last > 0 then
  local lastRev = tonumber(string.match(last[1][1], '^(%d+)-'))
  if lastRev ~= nil and lastRev >= cur + 1 then
    -- The feed is ahead of the counter (a hand edit): repair the counter, let the writer retry.
    redis.call('SET', KEYS[2], tostring(lastRev))
    return { 'conflict', tostring(lastRev) }
  end
end
local rev = redis.call('INCR', KEYS[2])
if epoch == '' then epoch = ARGV[3]; redis.call('SET', KEYS[3], epoch) end
for i = 6, #ARGV, 3 do
  if ARGV[i] == 'put' then redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
  else redis.call('HDEL', KEYS[1], ARGV[i + 1]) end
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], tostring(rev) .. '-0', 'epoch', epoch, 'ops', ARGV[5])
return rev
`
