import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import t from 'tap'
import { RedisStore, watchRedis } from '../lib/index.js'
import { fetchAll, nameServer, svcWithEndpoints, testProxy, until } from './helpers.js'
import { freePort, startRedis } from './redis-helpers.js'

type Teardown = { teardown: (fn: () => unknown) => void }

/** Starts a redis-server from a config file and waits for `ready` on its log. */
async function startFromConfig (t: Teardown, conf: string, args: string[], ready: RegExp): Promise<ChildProcess> {
  const p = spawn('redis-server', [conf, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(async () => {
    if (p.exitCode === null) { const e = once(p, 'exit'); p.kill('SIGKILL'); await e }
  })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      out += c.toString()
      if (ready.test(out)) { p.stdout?.off('data', onData); p.stdout?.resume(); resolve() }
    }
    p.stdout?.on('data', onData)
    p.once('exit', (code) => reject(new Error(`redis-server exited (${code}):\n${out}`)))
  })
  return p
}

function tmp (t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-topo-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A redis-sentinel (quorum 1) watching the master at `masterPort` as group svcmaster; returns its port. */
async function startSentinel (t: Teardown, masterPort: number, downAfterMs: number): Promise<number> {
  const dir = tmp(t)
  const port = await freePort()
  const conf = join(dir, 'sentinel.conf')
  writeFileSync(conf, [
    `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`,
    `sentinel monitor svcmaster 127.0.0.1 ${masterPort} 1`,
    `sentinel down-after-milliseconds svcmaster ${downAfterMs}`,
    'sentinel failover-timeout svcmaster 5000',
  ].join('\n') + '\n')
  await startFromConfig(t, conf, ['--sentinel'], /Sentinel ID is|monitor master svcmaster/)
  return port
}

t.test('Sentinel: a writer and a daemon find the master through a real redis-sentinel', async (t) => {
  const master = await startRedis(t)
  const sport = await startSentinel(t, master.port, 5000)
  const url = `redis+sentinel://127.0.0.1:${sport}/svcmaster`

  const a = await nameServer(t, 'via-sentinel', '127.0.9.1')
  const store = new RedisStore({ url, failFast: true })
  t.teardown(() => store.close())
  const res = await store.apply(svcWithEndpoints('sent', '127.50.9.1', 80, [{ ip: '127.0.9.1', port: a.port }]), '<sentinel>')
  t.equal(res.revision, 1)

  const proxy = testProxy(t)
  const source = await watchRedis(proxy, { url, blockMs: 200, startTimeoutMs: 5000 })
  t.teardown(() => source.close())
  t.ok(await until(() => { try { proxy.address('default/sent', 80); return true } catch { return false } }, 10000), 'daemon serves what the writer stored')
  const addr = proxy.address('default/sent', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'via-sentinel')
  // The data really is on the master the sentinel named.
  const direct = await master.client()
  t.equal(await direct.get('{svcproxy}:rev'), '1')
})

t.test('Sentinel failover: the master dies, the replica is promoted, writer and daemon follow it', async (t) => {
  const master = await startRedis(t)
  const replica = await startRedis(t)
  const rc = await replica.client()
  await rc.call('REPLICAOF', '127.0.0.1', String(master.port))
  const mc = await master.client()
  t.ok(await until(async () => String(await mc.call('INFO', 'replication')).includes('state=online'), 20000), 'the replica is in sync')
  const sport = await startSentinel(t, master.port, 1000)
  const sentinel = new Redis({ port: sport, host: '127.0.0.1' })
  t.teardown(() => sentinel.disconnect())
  // The sentinel learns of the replica from the master's INFO.
  t.ok(await until(async () => String(await sentinel.call('SENTINEL', 'REPLICAS', 'svcmaster')).includes(String(replica.port)), 20000), 'sentinel knows the replica')
  const url = `redis+sentinel://127.0.0.1:${sport}/svcmaster`

  const a = await nameServer(t, 'before', '127.0.9.4')
  const store = new RedisStore({ url })
  t.teardown(() => store.close())
  await store.apply(svcWithEndpoints('fo', '127.50.9.4', 80, [{ ip: '127.0.9.4', port: a.port }]), '<before>')
  t.ok(await until(async () => (await rc.get('{svcproxy}:rev')) === '1', 10000), 'the write reached the replica')

  const proxy = testProxy(t)
  const source = await watchRedis(proxy, { url, blockMs: 200, startTimeoutMs: 5000 })
  t.teardown(() => source.close())
  t.ok(await until(() => { try { proxy.address('default/fo', 80); return true } catch { return false } }, 10000), 'daemon serves')
  const addr = proxy.address('default/fo', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'before')

  await master.stop()
  t.ok(await until(async () => {
    const m = await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'svcmaster') as string[] | null
    return m?.[1] === String(replica.port)
  }, 30000), 'sentinel promoted the replica')
  t.equal(await fetchAll(addr.address, addr.port), 'before', 'the daemon kept serving through the failover')

  // The writer reconnects to the new master through the sentinel; a write may fail while it does.
  const b = await nameServer(t, 'after', '127.0.9.5')
  let lastError = ''
  t.ok(await until(async () => {
    try {
      await store.apply([svcWithEndpoints('fo', '127.50.9.4', 80, [{ ip: '127.0.9.5', port: b.port }])[1]], '<after>')
      return true
    } catch (err) {
      lastError = (err as Error).message
      return false
    }
  }, 20000), `a write lands on the promoted master (last error: ${lastError})`)
  t.ok(await until(async () => (await fetchAll(addr.address, addr.port)) === 'after', 20000), 'the daemon follows the new master')
})

t.test('Cluster: three masters, every key in one hash slot, writer and daemon agree', async (t) => {
  const dir = tmp(t)
  const ports = [await freePort(), await freePort(), await freePort()]
  for (const [i, port] of ports.entries()) {
    const conf = join(dir, `node${i}.conf`)
    writeFileSync(conf, [
      `port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `cluster-enabled yes`, `cluster-config-file nodes-${port}.conf`,
      'save ""', 'appendonly no',
    ].join('\n') + '\n')
    await startFromConfig(t, conf, [], /Ready to accept connections/)
  }
  // redis-cli ships with redis-server (Debian's redis-tools): it assigns the slots.
  const create = spawn('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  create.stdout.on('data', (d: Buffer) => { out += d.toString() })
  create.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const [code] = await once(create, 'exit') as [number | null]
  t.equal(code, 0, out.slice(-400))
  const url = `redis+cluster://127.0.0.1:${ports[0] ?? 0},127.0.0.1:${ports[1] ?? 0}`

  // Every node must report cluster_state:ok before a client can rely on the slot map; until
  // then ioredis would queue the commands and the test would wait on nothing.
  const states = async (): Promise<boolean> => {
    for (const port of ports) {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 })
      try {
        await c.connect()
        if (!String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok')) return false
      } catch {
        return false
      } finally {
        c.disconnect()
      }
    }
    return true
  }
  t.ok(await until(states, 20000), 'every node reports cluster_state:ok')

  const a = await nameServer(t, 'via-cluster', '127.0.9.2')
  const store = new RedisStore({ url, failFast: true })
  t.teardown(() => store.close())
  const res = await store.apply(svcWithEndpoints('clus', '127.50.9.2', 80, [{ ip: '127.0.9.2', port: a.port }]), '<cluster>')
  t.equal(res.revision, 1, 'apply through the cluster')

  const proxy = testProxy(t)
  const source = await watchRedis(proxy, { url, blockMs: 200, startTimeoutMs: 5000 })
  t.teardown(() => source.close())
  t.ok(await until(() => { try { proxy.address('default/clus', 80); return true } catch { return false } }, 10000), 'daemon serves what the writer stored')
  const addr = proxy.address('default/clus', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'via-cluster')

  // A change after the first list arrives through the watch (XREAD on the slot's node).
  const b = await nameServer(t, 'changed', '127.0.9.3')
  await store.apply([svcWithEndpoints('clus', '127.50.9.2', 80, [{ ip: '127.0.9.3', port: b.port }])[1]], '<cluster-change>')
  t.ok(await until(async () => (await fetchAll(addr.address, addr.port)) === 'changed', 10000), 'watched change applied')
})
