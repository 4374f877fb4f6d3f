// The writer (API server role): validation, allocation, merge, atomicity, concurrency.

import t from 'tap'
import { RedisStore, StoreError, ValidationError } from '../lib/index.js'
import { parseRedisUrl, redactUrl } from '../lib/store/connect.js'
import { storeKeys } from '../lib/store/schema.js'
import { until } from './helpers.js'
import { startRedis } from './redis-helpers.js'

function svc (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }], ...extra } }
}
function eps (name: string, ip: string, port = 8080): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ port }] }] }
}

t.test('apply validates, allocates clusterIPs and nodePorts, and merges per object', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())

  const first = await store.apply({ apiVersion: 'v1', kind: 'List', items: [svc('a'), svc('b', { type: 'NodePort' }), eps('a', '10.0.0.1')] }, 'one.json')
  t.equal(first.revision, 1)
  t.same(first.changes.map((c) => `${c.key} ${c.action}`), ['Service/default/a created', 'Service/default/b created', 'Endpoints/default/a created'])

  const { objects } = await store.list()
  const a = objects.find((o) => o.key === 'Service/default/a')?.obj
  const b = objects.find((o) => o.key === 'Service/default/b')?.obj
  t.ok(a?.kind === 'Service' && /^127\.96\./.test(a.clusterIP), 'clusterIP allocated from the default range')
  t.ok(b?.kind === 'Service' && b.ports[0] !== undefined && b.ports[0].nodePort >= 30000, 'nodePort allocated')
  t.not(a?.kind === 'Service' && a.clusterIP, b?.kind === 'Service' && b.clusterIP, 'distinct addresses')
  // Stored as raw Kubernetes JSON, allocations written in.
  const raw = JSON.parse(objects.find((o) => o.key === 'Service/default/a')?.text ?? '{}') as { spec: { clusterIP: string } }
  t.equal(raw.spec.clusterIP, a?.kind === 'Service' ? a.clusterIP : '')

  // Re-applying the same file changes nothing and writes no revision.
  const again = await store.apply([svc('a')], 'one.json')
  t.equal(again.revision, 1)
  t.same(again.changes.map((c) => c.action), ['unchanged'])

  // A second file with one object: replaces that one, leaves the others.
  const second = await store.apply([eps('a', '10.0.0.2')], 'two.json')
  t.equal(second.revision, 2)
  t.same(second.changes.map((c) => c.action), ['configured'])
  const after = await store.list()
  t.same(after.objects.map((o) => o.key), ['Endpoints/default/a', 'Service/default/a', 'Service/default/b'])
  const a2 = after.objects.find((o) => o.key === 'Service/default/a')?.obj
  t.equal(a2?.kind === 'Service' && a2.clusterIP, a?.kind === 'Service' && a.clusterIP, 'clusterIP kept across re-applies')
})

t.test('an invalid file or a conflicting one writes nothing', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply([svc('taken', { clusterIP: '127.96.1.1' })])
  const redis = await r.client()
  const before = await redis.hgetall(storeKeys().objects)

  // One valid and one invalid object: the valid one must not land either.
  t.ok(await failsWith(store.apply([svc('fine'), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'Bad_Name' }, spec: { ports: [{ port: 99999 }] } }], 'bad.json'),
    (err: unknown) => err instanceof ValidationError && err.issues.length >= 2 && err.issues.every((i) => i.file === 'bad.json')))
  // Valid alone, but its clusterIP is already allocated in the store.
  t.ok(await failsWith(store.apply([svc('fine'), svc('thief', { clusterIP: '127.96.1.1' })], 'clash.json'),
    (err: unknown) => err instanceof ValidationError && /already allocated to Service default\/taken/.test(err.message)))

  t.same(await redis.hgetall(storeKeys().objects), before, 'objects untouched')
  t.equal(await redis.get(storeKeys().rev), '1', 'no revision written')
  t.equal(await redis.xlen(storeKeys().feed), 1, 'no feed entry written')
})

t.test('concurrent applies from two writers never interleave', async (t) => {
  const r = await startRedis(t)
  const w1 = new RedisStore({ url: r.url })
  const w2 = new RedisStore({ url: r.url })
  t.teardown(() => Promise.all([w1.close(), w2.close()]))
  // Each "file" is 20 services without clusterIPs, so both writers race for allocations too.
  const file = (tag: string, round: number): unknown[] => Array.from({ length: 20 }, (_, i) => svc(`${tag}${i}`, { selector: { round: String(round) } }))
  const jobs: Array<Promise<unknown>> = []
  for (let round = 0; round < 10; round++) {
    jobs.push(w1.apply(file('x', round), `x${round}.json`), w2.apply(file('y', round), `y${round}.json`))
  }
  await Promise.all(jobs)

  const redis = await r.client()
  const entries = await redis.xrange(storeKeys().feed, '-', '+')
  t.equal(entries.length, 20, 'one revision per file')
  entries.forEach(([id, fields], i) => {
    t.equal(id, `${i + 1}-0`, 'revisions are consecutive')
    const ops = JSON.parse(fields[fields.indexOf('ops') + 1] ?? '[]') as Array<{ key: string, obj: string }>
    const tags = new Set(ops.map((o) => o.key.split('/')[2]?.[0]))
    const rounds = new Set(ops.map((o) => (JSON.parse(o.obj) as { spec: { selector: { round: string } } }).spec.selector.round))
    t.ok(ops.length === 20 && tags.size === 1 && rounds.size === 1, `revision ${i + 1} holds exactly one whole file`)
  })
  const { objects } = await store(r.url).list()
  const ips = objects.map((o) => (o.obj.kind === 'Service' ? o.obj.clusterIP : ''))
  t.equal(new Set(ips).size, 40, 'every service got its own clusterIP')

  function store (url: string): RedisStore {
    const s = new RedisStore({ url })
    t.teardown(() => s.close())
    return s
  }
})

t.test('delete by reference and by file; absent objects are reported', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  await store.apply([svc('a'), eps('a', '10.0.0.1'), svc('b')])
  const res = await store.delete(['service default/a', { kind: 'Endpoints', namespace: 'default', name: 'a' }, 'pod default/nope'])
  t.same(res.changes.map((c) => `${c.key} ${c.action}`), ['Service/default/a deleted', 'Endpoints/default/a deleted', 'Pod/default/nope not found'])
  t.same((await store.list()).objects.map((o) => o.key), ['Service/default/b'])
})

t.test('Redis unreachable: a StoreError with a stable code, and no password in it', async (t) => {
  const r = await startRedis(t)
  await r.stop()
  const store = new RedisStore({ url: `redis://:hunter2@127.0.0.1:${r.port}` })
  t.teardown(() => store.close())
  t.ok(await failsWith(store.apply([svc('a')]), (err: unknown) => err instanceof StoreError && err.code === 'SVCPROXY_STORE_UNAVAILABLE' && !err.message.includes('hunter2') && err.message.includes('***')))
})

t.test('a long-lived store recovers once Redis is back (failFast gives up on a call, not for good)', async (t) => {
  const r = await startRedis(t)
  const store = new RedisStore({ url: r.url })
  t.teardown(() => store.close())
  t.equal((await store.apply([svc('a')])).revision, 1)
  await r.stop()
  t.ok(await failsWith(store.apply([svc('b')]), (err: unknown) => err instanceof StoreError && err.code === 'SVCPROXY_STORE_UNAVAILABLE'), 'unreachable: a clear error')
  t.ok(await until(() => store.client.status === 'end', 10000), 'the client gave up reconnecting (failFast)')
  await r.start()
  t.equal((await store.apply([svc('b')])).revision, 1, 'the next call reconnects (the restarted server is empty)')
})

t.test('URLs: topologies are recognised and passwords redacted', async (t) => {
  t.equal(parseRedisUrl('redis://127.0.0.1:6380/2').db, 2)
  t.equal(parseRedisUrl('rediss://:pw@h:6380').tls, true)
  const s = parseRedisUrl('redis+sentinel://:pw@s1:26379,s2/mymaster')
  t.same([s.mode, s.name, s.password, s.hosts], ['sentinel', 'mymaster', 'pw', [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }]])
  const c = parseRedisUrl('redis+cluster://n1:7000,n2:7001')
  t.same([c.mode, c.hosts.length], ['cluster', 2])
  t.equal(redactUrl('redis://user:s3cret@h:1/0'), 'redis://user:***@h:1/0')
  t.throws(() => parseRedisUrl('http://x'), { code: 'SVCPROXY_CONFIG' })
  t.ok(await failsWith(Promise.resolve().then(() => parseRedisUrl('redis://:topsecret@h:1/x')), (err) => (err as Error).message.includes('***') && !(err as Error).message.includes('topsecret')))
})

/** Resolves true when `p` rejects with an error matching `pred` (tap's rejects() takes arrows for classes). */
async function failsWith (p: Promise<unknown>, pred: (err: unknown) => boolean): Promise<boolean> {
  try {
    await p
    return false
  } catch (err) {
    return pred(err)
  }
}
