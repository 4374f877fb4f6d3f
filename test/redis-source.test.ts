// The Redis source: list + watch, resume, relist on a trimmed feed, faults at start and at run time.

import { stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mkdtempSync, rmSync } from 'node:fs'
import t from 'tap'
import { type AppliedEvent, type ServiceProxy, RedisStore, type RedisSource, watchRedis } from '../lib/index.js'
import { readStateFile } from '../lib/sources/redis/state-file.js'
import { storeKeys } from '../lib/store/schema.js'
import { fetchAll, nameServer, testProxy, until, captureLogger } from './helpers.js'
import { cutSwitch, startRedis } from './redis-helpers.js'

type T = { teardown: (fn: () => unknown) => void }

function svc (name: string): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }] } }
}
function eps (name: string, ip: string, port: number): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ port }] }] }
}

async function follow (t: T, proxy: ServiceProxy, url: string, extra: Partial<Parameters<typeof watchRedis>[1]> = {}): Promise<{ source: RedisSource, applied: AppliedEvent[] }> {
  const applied: AppliedEvent[] = []
  const source = await watchRedis(proxy, { url, blockMs: 200, startTimeoutMs: 3000, onApplied: (e) => applied.push(e), ...extra })
  t.teardown(() => source.close())
  return { source, applied }
}

function writer (t: T, url: string): RedisStore {
  const s = new RedisStore({ url })
  t.teardown(() => s.close())
  return s
}

const routed = async (p: ServiceProxy, svcName = 'default/web'): Promise<string> => {
  try {
    const a = p.address(svcName, 80)
    return await fetchAll(a.address, a.port)
  } catch (err) {
    return `ERR:${(err as Error).message}`
  }
}

t.test('two daemons converge to the same table and route to the new endpoint', async (t) => {
  const r = await startRedis(t)
  const a = await nameServer(t, 'a', '127.0.4.1')
  const b = await nameServer(t, 'b', '127.0.4.2')
  const w = writer(t, r.url)
  await w.apply([svc('web'), eps('web', '127.0.4.1', a.port)])
  const p1 = testProxy(t)
  const p2 = testProxy(t)
  const { source: s1 } = await follow(t, p1, r.url)
  const { source: s2 } = await follow(t, p2, r.url)
  t.equal(await routed(p1), 'a')
  t.equal(await routed(p2), 'a')

  const res = await w.apply([eps('web', '127.0.4.2', b.port), svc('other')])
  t.ok(await until(() => s1.revision === res.revision && s2.revision === res.revision), 'both reached the revision')
  t.equal(await routed(p1), 'b')
  t.equal(await routed(p2), 'b')
  const dump = (p: ServiceProxy): string => JSON.stringify(p.table.allObjects().sort((x, y) => `${x.kind}/${x.name}`.localeCompare(`${y.kind}/${y.name}`)))
  t.equal(dump(p1), dump(p2), 'identical tables')
  t.equal(p1.table.services.get('default/other')?.clusterIP, p2.table.services.get('default/other')?.clusterIP, 'the writer allocated once for both')
  t.same(s1.health(), { ...s1.health(), kind: 'redis', synced: true, stale: false, revision: res.revision })
})

t.test('1,000 updates in a burst are applied once each, in order', async (t) => {
  const r = await startRedis(t)
  const w = writer(t, r.url)
  const base = (await w.apply([svc('burst'), eps('burst', '10.1.0.1', 1000)])).revision
  const p = testProxy(t)
  const seen: Array<[number, number]> = []
  const { source } = await follow(t, p, r.url, {
    onApplied: (e) => { if (e.via === 'watch') seen.push([e.revision, p.table.endpoints.get('default/burst')?.subsets[0]?.ports[0]?.port ?? -1]) },
  })
  let last = base
  for (let i = 1; i <= 1000; i++) last = (await w.apply([eps('burst', '10.1.0.1', 1000 + i)])).revision
  t.ok(await until(() => source.revision === last, 20_000), 'caught up')
  t.equal(seen.length, 1000, 'every revision applied once')
  t.ok(seen.every(([rev, port], i) => rev === base + 1 + i && port === 1001 + i), 'in revision order, each with its own content')
  t.equal(source.stats.lists, 1, 'no relist needed')
})

t.test('a disconnect during a burst loses, duplicates and reorders nothing (resume)', async (t) => {
  const r = await startRedis(t)
  const sw = await cutSwitch(t, r.port)
  const w = writer(t, r.url)
  const base = (await w.apply([svc('burst'), eps('burst', '10.1.0.1', 1000)])).revision
  const p = testProxy(t)
  const seen: number[] = []
  const { source } = await follow(t, p, sw.url, { onApplied: (e) => { if (e.via === 'watch') seen.push(e.revision) } })
  let last = base
  for (let i = 1; i <= 300; i++) {
    if (i === 100) sw.cut()
    if (i === 200) {
      t.ok(source.health().stale, 'stale while disconnected')
      t.match(source.health().reason, /unreachable/)
      sw.restore()
    }
    last = (await w.apply([eps('burst', '10.1.0.1', 1000 + i)])).revision
  }
  t.ok(await until(() => source.revision === last, 20_000), 'caught up after the reconnect')
  t.same(seen, Array.from({ length: 300 }, (_, i) => base + 1 + i), 'each revision exactly once, in order')
  t.equal(source.stats.lists, 1, 'resumed from the feed, no relist')
  t.ok(source.stats.resumes >= 1, 'counted as a resume')
  t.equal(p.table.endpoints.get('default/burst')?.subsets[0]?.ports[0]?.port, 1300)
  t.ok(await until(() => !source.health().stale), 'fresh again')
})

t.test('a trimmed feed forces a relist, which converges', async (t) => {
  const r = await startRedis(t)
  const sw = await cutSwitch(t, r.port)
  const w = writer(t, r.url)
  await w.apply([svc('web'), eps('web', '10.1.0.1', 1)])
  const p = testProxy(t)
  const { source } = await follow(t, p, sw.url)
  sw.cut()
  let last = 0
  for (let i = 2; i <= 30; i++) last = (await w.apply([eps('web', '10.1.0.1', i), svc(`s${i}`)])).revision
  await w.delete(['service default/s2'])
  last++
  const redis = await r.client()
  await redis.xtrim(storeKeys().feed, 'MAXLEN', 3)
  sw.restore()
  t.ok(await until(() => source.revision === last, 15_000), 'converged')
  t.ok(source.stats.gaps >= 1, 'the gap was detected')
  t.equal(source.stats.lists, 2, 'by a second list')
  t.equal(p.table.endpoints.get('default/web')?.subsets[0]?.ports[0]?.port, 30)
  t.equal(p.table.services.size, 29, 'web + s3..s30')
  t.notOk(p.table.services.has('default/s2'))
})

t.test('Redis down at start without a state file: not synced, serves nothing, then converges', async (t) => {
  const r = await startRedis(t)
  await r.stop()
  const p = testProxy(t)
  const { logger, lines } = captureLogger()
  const { source } = await follow(t, p, r.url, { logger })
  const h = source.health()
  t.same([h.synced, h.stale], [false, true])
  t.match(h.reason, /unreachable/)
  t.equal(p.table.services.size, 0)
  t.ok(lines.some((l) => /unreachable at start/.test(String(l.msg))), 'logged')

  await r.start()
  const res = await writer(t, r.url).apply([svc('web')])
  t.ok(await until(() => source.revision === res.revision, 15_000), 'converged once Redis came up')
  t.same([source.health().synced, source.health().stale], [true, false])
  t.ok(p.table.services.has('default/web'))
})

t.test('state file: served when Redis is down at start; an empty store is not obeyed, deletes are', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-state-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const stateFile = join(dir, 'state.json')
  const r = await startRedis(t)
  const a = await nameServer(t, 'a', '127.0.4.3')
  const w = writer(t, r.url)
  const res = await w.apply([svc('web'), eps('web', '127.0.4.3', a.port), svc('gone')])

  // A first daemon writes the snapshot.
  const p1 = testProxy(t)
  const { source: s1 } = await follow(t, p1, r.url, { stateFile })
  t.ok(await until(async () => (await readStateFile(stateFile).catch(() => null))?.revision === res.revision), 'state file written')
  t.equal((await stat(stateFile)).mode & 0o777, 0o600, 'mode 0600')
  await s1.close()

  // Redis is gone; a new daemon serves the snapshot and says it is stale.
  await r.stop()
  const p2 = testProxy(t)
  const { logger, lines } = captureLogger()
  const { source } = await follow(t, p2, r.url, { stateFile, logger })
  t.same([source.health().synced, source.health().stale], [true, true])
  t.equal(await routed(p2), 'a', 'serving the last known state')

  // Redis comes back empty (no persistence): keep serving, loudly.
  await r.start()
  t.ok(await until(() => /empty/.test(source.health().reason), 15_000), 'health says the store came back empty')
  t.ok(source.health().stale)
  t.ok(lines.some((l) => l.level === 50 && /THE STORE IS EMPTY/.test(String(l.msg))), 'logged as an error')
  t.equal(await routed(p2), 'a', 'still serving')

  // An explicit delete is obeyed even so.
  await w.delete(['service default/gone'])
  t.ok(await until(() => !p2.table.services.has('default/gone')), 'delete obeyed')
  t.ok(source.health().stale, 'still stale: the store holds no data yet')
  t.equal(await routed(p2), 'a')

  // Data again: converge to exactly the store.
  const b = await nameServer(t, 'b', '127.0.4.4')
  const res2 = await w.apply([svc('web'), eps('web', '127.0.4.4', b.port)])
  t.ok(await until(() => source.revision === res2.revision && !source.health().stale, 15_000), 'converged and fresh')
  t.equal(await routed(p2), 'b')
  t.same(p2.table.allObjects().map((o) => `${o.kind}/${o.name}`).sort(), ['Endpoints/web', 'Service/web'])
})

t.test('Redis restarted empty while running: keep serving, stale, converge on new data', async (t) => {
  const r = await startRedis(t)
  const a = await nameServer(t, 'a', '127.0.4.5')
  await writer(t, r.url).apply([svc('web'), eps('web', '127.0.4.5', a.port)])
  const p = testProxy(t)
  const { source } = await follow(t, p, r.url)
  await r.stop()
  t.ok(await until(() => /unreachable/.test(source.health().reason)), 'stale: unreachable')
  await r.start()
  t.ok(await until(() => /empty/.test(source.health().reason), 15_000), 'stale: store empty')
  t.equal(await routed(p), 'a')
  const w2 = writer(t, r.url)
  const res = await w2.apply([svc('fresh')])
  t.ok(await until(() => source.revision === res.revision && !source.health().stale, 15_000))
  t.same(p.table.allObjects().map((o) => `${o.kind}/${o.name}`), ['Service/fresh'])
})

t.test('a bad record is logged with its key and skipped; everything else keeps serving', async (t) => {
  const r = await startRedis(t)
  const a = await nameServer(t, 'a', '127.0.4.6')
  await writer(t, r.url).apply([svc('web'), eps('web', '127.0.4.6', a.port)])
  const redis = await r.client()
  const k = storeKeys()
  await redis.hset(k.objects, 'Service/default/bad', '{not json', 'Service/default/liar', JSON.stringify(svc('truth')))

  const p = testProxy(t)
  const { logger, lines } = captureLogger()
  const { source } = await follow(t, p, r.url, { logger })
  t.equal(await routed(p), 'a', 'the good objects serve')
  t.notOk(p.table.services.has('default/bad'))
  t.notOk(p.table.services.has('default/truth'))
  const badKeys = lines.filter((l) => /bad record/.test(String(l.msg))).map((l) => String(l.key))
  t.ok(badKeys.some((key) => key.endsWith('Service/default/bad')) && badKeys.some((key) => key.endsWith('Service/default/liar')), 'each logged with its key')

  // A bad record arriving through the feed: the last good version keeps serving.
  const epoch = await redis.get(k.epoch) ?? ''
  const rev = await redis.incr(k.rev)
  await redis.xadd(k.feed, `${rev}-0`, 'epoch', epoch, 'ops', JSON.stringify([{ op: 'put', key: 'Service/default/web', obj: '{"kind":"Service"}' }]))
  t.ok(await until(() => source.revision === rev), 'the revision is consumed')
  t.ok(lines.some((l) => /bad record/.test(String(l.msg)) && String(l.key).endsWith('Service/default/web') && l.revision === rev), 'logged with key and revision')
  t.equal(await routed(p), 'a', 'the previous version keeps serving')
  t.equal(source.stats.badRecords, 3)
})
