// A full read of the store at one revision, in slices: no command holds Redis for more than a
// millisecond or so, whatever the store's size (a Lua script reading everything at once held it
// for 80-110 ms at 10,000 services × 10 endpoints, and served nobody else meanwhile).
//
//   MGET epoch rev applying ─► HSCAN objects (slices of SCAN_COUNT) ─► MGET epoch rev
//   ─► XRANGE feed (from, to]: every revision committed since the scan began, replayed on top
//
// HSCAN returns every field present for the whole scan; a field written or deleted meanwhile may
// come back in any version, or not at all, but its revision is in the replayed range and the
// replay, in order, gives it its last value. A large commit still being copied (`applying`) is
// replayed from its feed entry the same way. So the result is exactly the state at `to`.

import { StoreError } from '../errors.js'
import type { RedisClient } from './connect.js'
import { type StoreKeys, decodeEntry, parseRevision, partOfId, revOfId } from './schema.js'

export interface StoreSnapshot {
  /** '' while nothing was ever written (or after the store was wiped). */
  epoch: string
  revision: number
  /** `Kind/ns/name` → stored JSON text, exactly as in Redis. */
  records: Map<string, string>
}

/** Fields asked per HSCAN: about 150 KB of reply and well under a millisecond of Redis time. */
export const SCAN_COUNT = 500
/** Feed entries per XRANGE of the replay. */
const REPLAY_COUNT = 100
const ATTEMPTS = 5
/** How long a read waits for a large commit being copied to finish. */
const UNFINISHED_WAIT_MS = 10_000

function str (v: unknown): string {
  return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : ''
}

async function head (client: RedisClient, keys: StoreKeys): Promise<{ epoch: string, revision: number, applying: number }> {
  const reply = await client.call('MGET', [keys.epoch, keys.rev, keys.applying])
  const [epoch, rev, applying] = Array.isArray(reply) ? reply as unknown[] : []
  if (rev == null) await client.call('GET', [keys.rev]) // MGET answers nil for a key of another type; GET says WRONGTYPE
  const pending = applying == null ? 0 : Number(str(applying))
  return { epoch: str(epoch), revision: parseRevision(rev, keys.rev), applying: Number.isSafeInteger(pending) ? pending : 0 }
}

/** Reads everything at one revision; retried when the feed cannot vouch for the scan (trimmed, or another epoch). */
export async function readSnapshot (client: RedisClient, keys: StoreKeys): Promise<StoreSnapshot> {
  const waitUntil = Date.now() + UNFINISHED_WAIT_MS
  for (let attempt = 1; ; attempt++) {
    const before = await head(client, keys)
    const from = before.applying > 0 ? Math.min(before.revision, before.applying - 1) : before.revision
    const records = new Map<string, string>()
    let cursor = '0'
    do {
      const reply = await client.call('HSCAN', [keys.objects, cursor, 'COUNT', SCAN_COUNT])
      if (!Array.isArray(reply) || !Array.isArray(reply[1])) throw new StoreError('SVCPROXY_STORE_CORRUPT', 'unexpected reply to HSCAN')
      cursor = str(reply[0])
      const flat = reply[1] as unknown[]
      for (let i = 0; i + 1 < flat.length; i += 2) records.set(str(flat[i]), str(flat[i + 1]))
    } while (cursor !== '0')
    const after = await head(client, keys)
    if (after.epoch === before.epoch && after.revision >= before.revision && await replay(client, keys, records, after.epoch, from, after.revision)) {
      return { epoch: after.epoch, revision: after.revision, records }
    }
    if (after.applying > 0) {
      // A large commit is being copied, its parts still arriving in the feed: wait for its writer.
      if (Date.now() > waitUntil) {
        throw new StoreError('SVCPROXY_STORE_UNAVAILABLE', `the large commit at revision ${after.applying} is unfinished (its writer stopped?); the next svcproxy apply or delete finishes it`)
      }
      attempt--
      await new Promise((resolve) => setTimeout(resolve, 50))
      continue
    }
    if (attempt >= ATTEMPTS) {
      throw new StoreError('SVCPROXY_STORE_UNAVAILABLE', `could not read the store at one revision in ${ATTEMPTS} attempts (it was re-created, or its feed trimmed, while being read)`)
    }
  }
}

/** Applies revisions (from, to] onto `records`. False when the feed no longer holds them all in order. */
async function replay (client: RedisClient, keys: StoreKeys, records: Map<string, string>, epoch: string, from: number, to: number): Promise<boolean> {
  let next = from + 1
  let start = `${next}-0`
  // A revision in parts (REV-0 says how many, REV-1.. follow) counts once all its parts are read.
  let want = 0
  let got = 0
  while (next <= to || got < want) {
    const reply = await client.call('XRANGE', [keys.feed, start, `(${to + 1}-0`, 'COUNT', REPLAY_COUNT])
    if (!Array.isArray(reply) || reply.length === 0) return false
    for (const e of reply as unknown[]) {
      if (!Array.isArray(e) || typeof e[0] !== 'string') return false
      start = `(${e[0]}`
      const part = partOfId(e[0])
      const rev = part === null ? revOfId(e[0]) : part.rev
      if (Number.isNaN(rev)) continue // an entry svcproxy did not write: the followers log it
      if (part !== null && (rev !== next - 1 || part.part !== got + 1)) continue // a part of nothing we assemble
      if (part === null && rev !== next) return false
      let entry
      try {
        entry = decodeEntry(e[1])
        if (entry.epoch !== epoch) return false
      } catch {
        if (part !== null) continue // not a part: foreign
        return false
      }
      if (part !== null && entry.part !== part.part) continue // foreign
      if (part === null) { next++; want = entry.parts; got = 0 } else got++
      for (const op of entry.ops) {
        if (op.op === 'put') records.set(op.key, op.obj)
        else records.delete(op.key)
      }
    }
  }
  return true
}
