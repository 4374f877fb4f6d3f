// The store at fleet scale (issue 19): what Redis is asked to do per apply and per resync, a
// large commit in slices that still lands at one revision, and a schema 1 store migrated.

import t from 'tap'
import { type AppliedEvent, RedisStore, ValidationError, createProxy, watchRedis } from '../lib/index.js'
import { storeKeys } from '../lib/store/schema.js'
import { SLICE_OPS } from '../lib/store/scripts.js'
import { until } from './helpers.js'
import { startRedis } from './redis-helpers.js'

function svc (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }], ...extra } }
}
function eps (name: string, ip: string, port = 8080): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ port }] }] }
}

/** Calls of each command since the last CONFIG RESETSTAT. */
async function calls (c: { call: (...a: string[]) => Promise<unknown> }): Promise<Map<string, number>> {
  const text = String(await c.call('INFO', 'commandstats'))
  return new Map([...text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)].map((m) => [m[1] ?? '', Number(m[2])]))
}

t.test('an apply reads and writes what changed: no whole-store read, one short script', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  const doc: Array<Record<string, unknown>> = []
  for (let i = 0; i < 300; i++) doc.push(svc(`s${i}`), eps(`s${i}`, `10.0.${i >> 8}.${i & 255}`))
  await store.apply(doc)
  const redis = await r.client()
  await redis.call('CONFIG', 'RESETSTAT')
  const res = await store.apply([eps('s7', '10.9.9.9')])
  t.same(res.changes, [{ key: 'Endpoints/default/s7', action: 'configured' }])
  const used = await calls(redis)
  t.notOk(used.has('hgetall') || used.has('hscan') || used.has('hkeys') || used.has('hvals'), `no whole-hash read (${[...used.keys()].join(', ')})`)
  t.equal(used.get('eval'), 1, 'one commit script')

  // The same whole document again, one endpoint changed: only that record is written.
  doc[15] = eps('s7', '10.9.9.8')
  const again = await store.apply(doc)
  t.same(again.changes.filter((c) => c.action !== 'unchanged'), [{ key: 'Endpoints/default/s7', action: 'configured' }])
  const entries = await redis.xrevrange(storeKeys().feed, '+', '-', 'COUNT', 1)
  t.equal(JSON.parse(entries[0]?.[1][3] ?? '[]').length, 1, 'the feed entry carries the one changed object')

  // Allocation is still checked against every stored service, through the alloc index.
  const stored = (await store.list()).objects.find((o) => o.key === 'Service/default/s3')?.obj
  const taken = stored?.kind === 'Service' ? stored.clusterIP : ''
  const err = await store.apply([svc('clash', { clusterIP: taken })]).then(() => null, (e: unknown) => e)
  t.ok(err instanceof ValidationError && err.message.includes(`${taken} is already allocated to Service default/s3`), 'a stored address is refused')
  const fresh = await store.apply([svc('fresh')])
  const got = (await store.list()).objects.find((o) => o.key === 'Service/default/fresh')?.obj
  t.ok(fresh.revision > again.revision && got?.kind === 'Service' && got.clusterIP !== '' && got.clusterIP !== taken, 'a new service gets a free address')
})

t.test('a commit larger than one slice lands at one revision, for followers and for lists', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply([svc('first'), eps('first', '10.1.0.1')])
  const proxy = createProxy({ ephemeralPorts: true })
  t.teardown(() => proxy.close())
  const applied: AppliedEvent[] = []
  const source = await watchRedis(proxy, { url: r.url, blockMs: 200, startTimeoutMs: 3000, onApplied: (e) => applied.push(e) })
  t.teardown(() => source.close())
  await source.synced()

  const n = SLICE_OPS * 3
  const doc: Array<Record<string, unknown>> = []
  for (let i = 0; i < n; i++) doc.push(svc(`big${i}`), eps(`big${i}`, `10.2.${i >> 8}.${i & 255}`))
  const redis = await r.client()
  await redis.call('CONFIG', 'RESETSTAT')
  const res = await store.apply(doc)
  t.ok(((await calls(redis)).get('eval') ?? 0) > 3, 'committed, then copied in slices')
  t.ok(await until(() => source.revision === res.revision), 'the follower reached the revision')
  const mine = applied.filter((e) => e.revision === res.revision)
  t.equal(mine.length, 1, 'in one step')
  t.equal(mine[0]?.changed, n, 'with every service of the document')
  t.equal(proxy.table.services.size, n + 1)
  t.equal(await redis.exists(storeKeys().applying, storeKeys().pending), 0, 'nothing left pending')
  const listed = await store.list()
  t.equal(listed.revision, res.revision)
  t.equal(listed.objects.length, 2 * n + 2, 'a list sees all of it')

  // A second follower lists it (in slices) and agrees.
  const other = createProxy({ ephemeralPorts: true })
  t.teardown(() => other.close())
  const late = await watchRedis(other, { url: r.url, blockMs: 200, startTimeoutMs: 3000 })
  t.teardown(() => late.close())
  await late.synced()
  t.equal(late.revision, res.revision)
  t.equal(other.table.services.size, n + 1)
})

t.test('the periodic resync costs the store O(1) and relists only when the store says so', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply([svc('web'), eps('web', '10.1.0.1')])
  const proxy = createProxy({ ephemeralPorts: true })
  t.teardown(() => proxy.close())
  const source = await watchRedis(proxy, { url: r.url, blockMs: 100, syncPeriodMs: 200, startTimeoutMs: 3000 })
  t.teardown(() => source.close())
  await source.synced()
  const redis = await r.client()
  await redis.call('CONFIG', 'RESETSTAT')
  t.ok(await until(async () => ((await calls(redis)).get('hlen') ?? 0) >= 5), 'five resyncs ran')
  const used = await calls(redis)
  t.equal(source.stats.lists, 1, 'no relist')
  t.notOk(used.has('hscan') || used.has('eval'), 'nothing read but epoch and revision')
  // A store rolled back (the feed cannot vouch for it): relisted.
  await redis.set(storeKeys().rev, '0')
  t.ok(await until(() => source.stats.lists === 2), 'relisted')
})

t.test('a store written by schema 1 is migrated by the first apply; allocations stay checked', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply([svc('a', { clusterIP: '127.96.0.10' }), svc('b', { type: 'NodePort' }), eps('a', '10.1.0.1')])
  const redis = await r.client()
  const k = storeKeys()
  await redis.del(k.digest, k.alloc, k.schema) // what schema 1 left: objects, rev, feed, epoch
  const same = await store.apply([svc('a', { clusterIP: '127.96.0.10' }), eps('a', '10.1.0.1')])
  t.same(same.changes.map((c) => c.action), ['unchanged', 'unchanged'])
  t.equal(await redis.get(k.schema), '2')
  t.equal(await redis.hget(k.alloc, 'ip/127.96.0.10'), 'default/a')
  await t.rejects(store.apply([svc('c', { clusterIP: '127.96.0.10' })]), ValidationError)
})

t.test('a list in slices is exactly one revision, whatever is written while it scans', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  const doc: Array<Record<string, unknown>> = []
  for (let i = 0; i < 2000; i++) doc.push(eps(`e${i}`, `10.3.${i >> 8}.${i & 255}`))
  await store.apply(doc)
  const reader = new RedisStore({ url: r.url })
  t.teardown(() => reader.close())
  // Between the scan's slices, another writer changes one record, deletes one and adds one.
  const call = reader.client.call.bind(reader.client) as (cmd: string, args: unknown[]) => Promise<unknown>
  let scans = 0
  let last = 0
  ;(reader.client as unknown as { call: typeof call }).call = async (cmd, args) => {
    const reply = await call(cmd, args)
    if (cmd === 'HSCAN' && ++scans === 2) {
      await store.apply([eps('e5', '10.9.9.9'), eps('new', '10.9.9.8')])
      last = (await store.delete(['endpoints default/e1999'])).revision
    }
    return reply
  }
  const snap = await reader.snapshot()
  t.ok(scans > 2, `read in slices (${scans} HSCAN)`)
  t.equal(snap.revision, last, 'at the last revision')
  t.match(snap.records.get('Endpoints/default/e5') ?? '', '10.9.9.9', 'the change written meanwhile')
  t.ok(snap.records.has('Endpoints/default/new'), 'the object added meanwhile')
  t.notOk(snap.records.has('Endpoints/default/e1999'), 'not the one deleted meanwhile')
  t.equal(snap.records.size, 2000, 'nothing else missing')
})

t.test('a large commit whose writer stops half-way is finished by the next writer; followers get it whole', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply([svc('first')])
  const proxy = createProxy({ ephemeralPorts: true })
  t.teardown(() => proxy.close())
  const source = await watchRedis(proxy, { url: r.url, blockMs: 200, startTimeoutMs: 3000 })
  t.teardown(() => source.close())
  await source.synced()

  const dying = new RedisStore({ url: r.url })
  t.teardown(() => dying.close())
  const call = dying.client.call.bind(dying.client) as (cmd: string, args: unknown[]) => Promise<unknown>
  let copied = 0
  ;(dying.client as unknown as { call: typeof call }).call = async (cmd, args) => {
    if (cmd === 'EVAL' && String(args[0]).includes('LPOP') && ++copied > 1) throw new Error('the writer died')
    return await call(cmd, args)
  }
  const n = SLICE_OPS * 3
  const doc: Array<Record<string, unknown>> = []
  for (let i = 0; i < n; i++) doc.push(svc(`big${i}`))
  await t.rejects(dying.apply(doc))
  const redis = await r.client()
  t.equal(await redis.exists(storeKeys().applying), 1, 'left unfinished')
  t.equal(proxy.table.services.size, 1, 'the follower waits for every part')

  const next = await store.apply([svc('after')])
  t.equal(await redis.exists(storeKeys().applying, storeKeys().pending), 0, 'the next writer finished it first')
  t.ok(await until(() => source.revision === next.revision), 'the follower caught up')
  t.equal(proxy.table.services.size, n + 2, 'with all of the large revision')
  t.equal((await store.list()).objects.length, n + 2)
})
