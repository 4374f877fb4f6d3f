// The writer's Lua scripts (schema 2). Each runs alone in Redis, so each one is kept short: a
// commit of a few hundred objects, or one slice of a larger commit. KEYS, for all of them, are
// scriptKeys() below, in that order.

import type { StoreKeys } from './schema.js'

export function scriptKeys (k: StoreKeys): string[] {
  return [k.objects, k.rev, k.epoch, k.feed, k.digest, k.alloc, k.applying, k.pending, k.schema]
}

/** Objects per commit script, or per slice of a larger commit; and bytes, whichever comes first. */
export const SLICE_OPS = 100
export const SLICE_BYTES = 64 * 1024

// One (op, a, b) triple: objects, digest and alloc index changes. 'adel' frees an allocation only
// while the service named still holds it.
const APPLY_FN = `
local function apply (op, a, b)
  if op == 'put' then redis.call('HSET', KEYS[1], a, b)
  elseif op == 'del' then redis.call('HDEL', KEYS[1], a)
  elseif op == 'dset' then redis.call('HSET', KEYS[5], a, b)
  elseif op == 'ddel' then redis.call('HDEL', KEYS[5], a)
  elseif op == 'aset' then redis.call('HSET', KEYS[6], a, b)
  elseif op == 'adel' then if redis.call('HGET', KEYS[6], a) == b then redis.call('HDEL', KEYS[6], a) end
  end
end
`

/**
 * COMMIT, all or nothing: only if the revision is still the one the batch was planned against
 * (optimistic concurrency, like resourceVersion) and no earlier large commit is still being
 * copied. The feed entry is written first: an XADD refused because the feed is ahead of the
 * counter (a hand edit) writes nothing, repairs the counter and lets the writer retry.
 * ARGV: expectedRev, expectedEpoch ('' = none yet), newEpoch, feedMaxLen, opsJson, mode, then
 *   mode 'apply': (op, a, b) triples, applied here;
 *   mode 'stage': the number of parts. KEYS[10] is a staging LIST the writer filled beforehand
 *   (one RPUSH per slice: {n, ops, t}); it becomes `pending`, and the feed entry REV-0 says
 *   `parts`: the ops follow in entries REV-1..REV-parts, which APPLY_NEXT_SCRIPT adds as it copies
 *   each slice into the hashes. The revision is committed here; `applying` says it is still
 *   being copied.
 * Returns the new revision, or {'conflict', currentRev}.
 */
export const COMMIT_SCRIPT = `${APPLY_FN}
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = redis.call('GET', KEYS[3]) or ''
if cur ~= tonumber(ARGV[1]) or epoch ~= ARGV[2] or redis.call('EXISTS', KEYS[7]) == 1 then return { 'conflict', tostring(cur) } end
if epoch == '' then epoch = ARGV[3] end
local rev = cur + 1
local added
if ARGV[6] == 'stage' then
  added = redis.pcall('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], tostring(rev) .. '-0', 'epoch', epoch, 'ops', '[]', 'parts', ARGV[7])
else
  added = redis.pcall('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], tostring(rev) .. '-0', 'epoch', epoch, 'ops', ARGV[5])
end
if type(added) == 'table' and added.err then
  local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
  local lastRev = nil
  if #last > 0 then lastRev = tonumber(string.match(last[1][1], '^(%d+)-')) end
  if lastRev ~= nil and lastRev > cur then
    redis.call('SET', KEYS[2], tostring(lastRev))
    return { 'conflict', tostring(lastRev) }
  end
  return redis.error_reply(added.err)
end
redis.call('SET', KEYS[2], tostring(rev))
redis.call('SET', KEYS[3], epoch)
redis.call('SET', KEYS[9], '2')
if ARGV[6] == 'stage' then
  redis.call('DEL', KEYS[8])
  redis.call('RENAME', KEYS[10], KEYS[8])
  redis.call('PERSIST', KEYS[8])
  redis.call('SET', KEYS[7], tostring(rev))
  return rev
end
for i = 7, #ARGV, 3 do apply(ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
return rev
`

/**
 * Copies the next pending slice of a large commit into the hashes. Any writer may run it (one
 * that died half-way leaves the rest to the next). Returns 1 while slices remain, 0 when done.
 */
export const APPLY_NEXT_SCRIPT = `${APPLY_FN}
local rev = redis.call('GET', KEYS[7])
if not rev then return 0 end
local s = redis.call('LPOP', KEYS[8])
if s then
  local slice = cjson.decode(s)
  redis.call('XADD', KEYS[4], rev .. '-' .. slice.n, 'epoch', redis.call('GET', KEYS[3]) or '', 'part', tostring(slice.n), 'ops', slice.ops)
  local t = slice.t
  for i = 1, #t, 3 do apply(t[i], t[i + 1], t[i + 2]) end
end
if redis.call('LLEN', KEYS[8]) == 0 then redis.call('DEL', KEYS[7]); return 0 end
return 1
`

/**
 * Index fields that change no object (digests of records written by an older svcproxy, the
 * migration to schema 2): only while the revision is still ARGV[1]. ARGV[2]: '1' to mark the
 * schema as 2 as well. Then (op, a, b) triples of 'dset'/'aset'.
 */
export const INDEX_SCRIPT = `${APPLY_FN}
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) or redis.call('EXISTS', KEYS[7]) == 1 then return 0 end
for i = 3, #ARGV, 3 do apply(ARGV[i], ARGV[i + 1], ARGV[i + 2]) end
if ARGV[2] == '1' then redis.call('SET', KEYS[9], '2') end
return 1
`

/** Splits triples into slices of at most SLICE_OPS triples and about SLICE_BYTES. */
export function sliceTriples (triples: string[]): string[][] {
  const out: string[][] = []
  let cur: string[] = []
  let bytes = 0
  for (let i = 0; i + 2 < triples.length; i += 3) {
    const size = (triples[i + 1] ?? '').length + (triples[i + 2] ?? '').length + 16
    if (cur.length > 0 && (cur.length / 3 >= SLICE_OPS || bytes + size > SLICE_BYTES)) { out.push(cur); cur = []; bytes = 0 }
    cur.push(triples[i] ?? '', triples[i + 1] ?? '', triples[i + 2] ?? '')
    bytes += size
  }
  if (cur.length > 0) out.push(cur)
  return out
}
