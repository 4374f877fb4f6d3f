// The Redis source and the CLI when the store misbehaves without going away: a server that stops
// answering (SIGSTOP: what a partition that drops packets looks like), keys of a type svcproxy
// did not write, feed entries svcproxy did not write. Each fault must be known, said once, and
// outlived: the last good state keeps serving and the source catches up by itself.

import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { type ServiceProxy, RedisStore, type RedisSource, createAdminServer, watchRedis } from '../lib/index.js'
import { main } from '../lib/cli/main.js'
import { storeKeys } from '../lib/store/schema.js'
import { parseExposition, valueOf } from './exposition.js'
import { fetchAll, nameServer, testProxy, until } from './helpers.js'
import { type TestRedis, startRedis } from './redis-helpers.js'

type T = { teardown: (fn: () => unknown) => void }
type Line = Record<string, unknown>

const svc = (name: string): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { ports: [{ port: 80 }] } })
const eps = (name: string, ip: string, port: number): Record<string, unknown> =>
  ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ port }] }] })

function captureLogger (): { logger: pino.Logger, lines: Line[] } {
  const lines: Line[] = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Line)
      cb()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

const said = (lines: Line[], re: RegExp): Line[] => lines.filter((l) => re.test(String(l.msg)))

async function follow (t: T, proxy: ServiceProxy, url: string, logger: pino.Logger, syncPeriodMs: number): Promise<RedisSource> {
  const source = await watchRedis(proxy, { url, logger, syncPeriodMs, blockMs: 200, startTimeoutMs: 3000 })
  t.teardown(() => source.close())
  return source
}

function writer (t: T, url: string): RedisStore {
  const s = new RedisStore({ url })
  t.teardown(() => s.close())
  return s
}

const routed = async (p: ServiceProxy): Promise<string> => {
  try {
    const a = p.address('default/web', 80)
    return await fetchAll(a.address, a.port)
  } catch (err) {
    return `ERR:${(err as Error).message}`
  }
}

/** SIGSTOP / SIGCONT the test's own redis-server (its pid from INFO); the teardown never leaves it stopped. */
async function pauser (t: T, r: TestRedis): Promise<{ stop: () => void, cont: () => void }> {
  const info = await (await r.client()).info('server')
  const pid = Number(/process_id:(\d+)/.exec(info)?.[1])
  if (!(pid > 0)) throw new Error(`no process_id in INFO server:\n${info}`)
  let stopped = false
  const cont = (): void => { if (stopped) { stopped = false; process.kill(pid, 'SIGCONT') } }
  t.teardown(cont)
  return { stop: () => { stopped = true; process.kill(pid, 'SIGSTOP') }, cont }
}

/** How many times Redis ran a command (INFO commandstats): the quiet retries leave no log, only calls. */
async function calls (r: TestRedis, command: string): Promise<number> {
  const info = await (await r.client()).info('commandstats')
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0)
}

t.test('a hung store (SIGSTOP) is stale within two sync periods, said once, counted; it catches up after SIGCONT', async (t) => {
  const syncPeriodMs = 2000
  const r = await startRedis(t)
  const a = await nameServer(t, 'a', '127.0.4.21')
  const b = await nameServer(t, 'b', '127.0.4.22')
  const w = writer(t, r.url)
  await w.apply([svc('web'), eps('web', '127.0.4.21', a.port)])
  const p = testProxy(t)
  const { logger, lines } = captureLogger()
  const source = await follow(t, p, r.url, logger, syncPeriodMs)
  const admin = await createAdminServer({ proxy: p, health: () => source.health(), metricsBindAddress: '127.0.0.1:0' })
  t.teardown(() => admin.close())
  const base = admin.metricsUrl ?? ''
  const healthz = async (): Promise<number> => (await fetch(`${base}/healthz`)).status
  t.equal(await healthz(), 200, 'fresh while the store answers')
  t.equal(await routed(p), 'a')

  const redis = await pauser(t, r)
  const stoppedAt = Date.now()
  redis.stop()
  t.ok(await until(() => source.health().stale, 2 * syncPeriodMs + 2000), 'stale within about two sync periods')
  const staleMs = Date.now() - stoppedAt
  t.comment(`SIGSTOP -> stale: ${staleMs} ms (sync period ${syncPeriodMs} ms)`)
  t.match(source.health().reason, /unreachable: no answer within/, 'health says why, in words')
  t.equal(await healthz(), 503, '/healthz turns 503, as kube-proxy once updates stop')
  t.equal(await routed(p), 'a', 'the last good state keeps serving')

  // The reconnects that follow time out too, quietly.
  t.ok(await until(() => source.stats.timeouts >= 2, 15_000), 'a retry timed out as well')
  const scrape = parseExposition(await (await fetch(`${base}/metrics`)).text())
  t.equal(valueOf(scrape, 'svcproxy_source_stale', { source: 'redis' }), 1)
  t.ok((valueOf(scrape, 'svcproxy_source_timeouts_total', { source: 'redis' }) ?? 0) >= 2, 'timeouts counted')
  const hung = said(lines, /stopped answering/)
  t.equal(hung.length, 1, 'one log line for the outage, not one per retry')
  t.equal(hung[0]?.level, 40)
  t.match(String(hung[0]?.err), /^no answer within \d/)
  t.same(said(lines, /lost the store|connected to the store/).length, 1, 'no reconnect chatter (only the first connect)')

  const contAt = Date.now()
  redis.cont()
  t.ok(await until(() => !source.health().stale, 15_000), 'fresh again by itself')
  t.comment(`SIGCONT -> fresh: ${Date.now() - contAt} ms`)
  t.equal(await healthz(), 200)
  const res = await w.apply([eps('web', '127.0.4.22', b.port)])
  t.ok(await until(() => source.revision === res.revision, 10_000), 'a change written after SIGCONT is applied')
  t.equal(await routed(p), 'b')
})

t.test('a key of the wrong type is SVCPROXY_STORE_CORRUPT naming the key, logged once, retried quietly; the last state serves', async (t) => {
  const k = storeKeys()
  const cases: Array<{ name: string, key: string, corrupt: (c: Awaited<ReturnType<TestRedis['client']>>) => Promise<unknown>, says: RegExp }> = [
    { name: 'objects as a string', key: k.objects, corrupt: async (c) => { await c.del(k.objects); await c.set(k.objects, 'x') }, says: /holds a Redis string where svcproxy keeps a hash/ },
    { name: 'revision as a hash', key: k.rev, corrupt: async (c) => { await c.del(k.rev); await c.hset(k.rev, 'n', '1') }, says: /holds a Redis hash where svcproxy keeps a string/ },
    { name: 'revision "abc"', key: k.rev, corrupt: async (c) => await c.set(k.rev, 'abc'), says: /holds "abc", not a revision number/ },
    { name: 'feed as a string', key: k.feed, corrupt: async (c) => { await c.del(k.feed); await c.set(k.feed, 'x') }, says: /holds a Redis string where svcproxy keeps a stream/ },
  ]
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const r = await startRedis(t)
      const a = await nameServer(t, 'a', '127.0.4.23')
      const w = writer(t, r.url)
      await w.apply([svc('web'), eps('web', '127.0.4.23', a.port)])
      const p = testProxy(t)
      const { logger, lines } = captureLogger()
      const source = await follow(t, p, r.url, logger, 500)
      const redis = await r.client()
      const saved = await redis.dumpBuffer(c.key)
      await c.corrupt(redis)

      t.ok(await until(() => /^store corrupt/.test(source.health().reason), 10_000), 'health says the store is corrupt')
      t.ok(source.health().stale, 'stale: updates are not being applied')
      t.match(source.health().reason, c.key)
      t.match(source.health().reason, c.says)
      // Quiet retries: each one looks at the key types again (TYPE), and logs nothing new.
      const before = await calls(r, 'type')
      t.ok(await until(async () => await calls(r, 'type') >= before + 3 * 4, 15_000), 'retried (three more rounds)')
      const errors = lines.filter((l) => l.code === 'SVCPROXY_STORE_CORRUPT')
      t.equal(errors.length, 1, 'logged once')
      t.equal(errors[0]?.key, c.key, 'naming the key')
      t.equal(errors[0]?.level, 50)
      t.same(said(lines, /lost the store|connected to the store/).map((l) => l.msg), ['connected to the store'], 'not reported as an outage, no reconnect loop')
      t.equal(await routed(p), 'a', 'the last good state keeps serving')

      // Repaired: the source recovers by itself and follows the next write.
      await redis.del(c.key)
      if (saved !== null) await redis.restore(c.key, 0, saved)
      t.ok(await until(() => !source.health().stale, 10_000), 'fresh once repaired')
      t.equal(said(lines, /answers normally again/).length, 1)
      const res = await w.apply([svc('web'), eps('web', '127.0.4.23', a.port), svc('next')])
      t.ok(await until(() => source.revision === res.revision && p.table.services.has('default/next'), 10_000), 'follows the next write')
    })
  }
})

t.test('feed entries svcproxy did not write are logged once, relisted over once, then skipped', async (t) => {
  const k = storeKeys()
  const cases: Array<{ name: string, add: (c: Awaited<ReturnType<TestRedis['client']>>) => Promise<string> }> = [
    // XADD * makes a millisecond id: far ahead of the store's revision.
    { name: 'rev: "abc" with an id of its own', add: async (c) => String(await c.xadd(k.feed, '*', 'rev', 'abc')) },
    // The next revision's id, but no ops: what a hand-written entry looks like.
    { name: 'rev: "abc" at the next revision', add: async (c) => String(await c.xadd(k.feed, `${Number(await c.get(k.rev)) + 1}-0`, 'rev', 'abc')) },
    // Another sequence number than svcproxy's -0.
    { name: 'an id that is not REVISION-0', add: async (c) => String(await c.xadd(k.feed, `${Number(await c.get(k.rev))}-5`, 'epoch', 'x', 'ops', '[]')) },
  ]
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const r = await startRedis(t)
      const w = writer(t, r.url)
      await w.apply([svc('web')])
      const p = testProxy(t)
      const { logger, lines } = captureLogger()
      const source = await follow(t, p, r.url, logger, 60_000)
      const redis = await r.client()
      const id = await c.add(redis)
      t.ok(await until(() => lines.some((l) => String(l.key).endsWith(id)), 5000), 'logged, naming the entry')
      // Its relist is done once the source waits on the feed again (XREAD blocks, then the idle check runs).
      const listsThen = source.stats.lists
      const mget = await calls(r, 'mget')
      t.ok(await until(async () => await calls(r, 'mget') >= mget + 3, 5000), 'back to an idle watch')
      t.ok(source.stats.lists - listsThen <= 1 && source.stats.lists <= 3, `relisted over at most once (lists: ${source.stats.lists})`)
      const about = lines.filter((l) => String(l.key ?? '').includes(id) || /trimmed|another store epoch/.test(String(l.msg)))
      t.equal(about.length, 1, 'logged once')
      t.equal(about[0]?.level, 50)
      t.notOk(source.health().stale, 'the source is fine')

      const res = await w.apply([svc('web'), svc('next')])
      t.ok(await until(() => source.revision === res.revision && p.table.services.has('default/next'), 10_000), 'follows the next write')
    })
  }
})

t.test('the source logs each applied batch of revisions at info: revision and counts, not each object', async (t) => {
  const r = await startRedis(t)
  const w = writer(t, r.url)
  await w.apply([svc('web')])
  const p = testProxy(t)
  const { logger, lines } = captureLogger()
  const source = await follow(t, p, r.url, logger, 60_000)
  const res = await w.apply([svc('a'), svc('b'), eps('a', '10.0.0.1', 80)])
  t.ok(await until(() => source.revision === res.revision))
  t.ok(await until(() => said(lines, /applied a store revision/).length === 1))
  const line = said(lines, /applied/)[0]
  t.same({ level: line?.level, revision: line?.revision, from: line?.from, revisions: line?.revisions, puts: line?.puts, deletes: line?.deletes },
    { level: 30, revision: res.revision, from: res.revision, revisions: 1, puts: 3, deletes: 0 }, 'one line for the three objects')
  t.ok(Number(line?.changed) > 0, 'with what changed in the proxy')
  const del = await w.delete(['service default/a'])
  t.ok(await until(() => said(lines, /applied a store revision/).length === 2))
  t.match(said(lines, /applied/)[1], { revision: del.revision, puts: 0, deletes: 1 })
})

/** The CLI in-process (main() is what bin/svcproxy runs). */
async function cli (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = ''
  try {
    const code = await main(args, { out: (l) => { stdout += `${l}\n` }, err: (l) => { stderr += `${l}\n` } })
    return { code, stdout, stderr }
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
  }
}

t.test('the CLI names a corrupt key and says an unreachable store in words, the URL redacted', async (t) => {
  const r = await startRedis(t)
  await writer(t, r.url).apply([svc('web')])
  const redis = await r.client()
  const k = storeKeys()
  await redis.del(k.objects)
  await redis.set(k.objects, 'x')
  for (const args of [['get', 'services'], ['delete', 'service', 'default/web']]) {
    const res = await cli([...args, '--redis', r.url])
    t.equal(res.code, 1, `${args[0]}: fails`)
    t.match(res.stderr, `is corrupt: ${k.objects} holds a Redis string where svcproxy keeps a hash`, `${args[0]}: names the key`)
    t.notMatch(res.stderr, /WRONGTYPE|user_script|script:/, `${args[0]}: no raw Lua error`)
  }
  await redis.del(k.objects)
  await redis.set(k.rev, 'abc')
  const rev = await cli(['get', 'services', '--redis', r.url])
  t.match(rev.stderr, `is corrupt: ${k.rev} holds "abc", not a revision number`)

  await r.stop()
  const down = await cli(['get', 'services', '--redis', `redis://:hunter2@127.0.0.1:${r.port}`])
  t.equal(down.code, 1)
  t.match(down.stderr, `cannot reach the store at redis://:***@127.0.0.1:${r.port}: connection refused`)
  t.notMatch(down.stderr, /max retries|maxRetriesPerRequest|enableOfflineQueue|hunter2/, 'no ioredis internals, no password')
})
