// The balancing algorithms of issue 14 through real sockets: least-connections sees the live
// connection counts, hash gives one client the same endpoint on two proxies (client addresses are
// distinct 127.x.y.z sources: all of 127/8 is local on Linux), p2c replays under a seed.
// Timing figures (a 10x slower endpoint's share, % of clients moved) are in bench/balancers.ts.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { ServiceProxy } from '../lib/index.js'
import { listen, nameServer, svcWithEndpoints, testProxy, udpClient, udpServer, until } from './helpers.js'

/** A server that sends its name and then holds the connection open until the test ends. */
async function holdingServer (t: { teardown: (fn: () => unknown) => void }, name: string, host: string): Promise<{ port: number, server: Server }> {
  const held: Socket[] = []
  const server = createServer((s) => { held.push(s); s.on('error', () => {}); s.write(name) })
  const port = await listen(server, host)
  t.teardown(() => { for (const s of held) s.destroy(); server.close() })
  return { port, server }
}

/** Connects (from `localAddress` when given) and resolves with the first data as text; the socket stays open. */
async function firstWord (host: string, port: number, localAddress?: string): Promise<{ word: string, sock: Socket }> {
  const sock = connect({ host, port, localAddress })
  sock.on('error', () => {})
  const [chunk] = await once(sock, 'data') as [Buffer]
  return { word: chunk.toString(), sock }
}

/** Reads everything until the peer closes, from `localAddress`. */
async function fetchFrom (host: string, port: number, localAddress: string): Promise<string> {
  const sock = connect({ host, port, localAddress })
  const chunks: Buffer[] = []
  sock.on('data', (c: Buffer) => chunks.push(c))
  await once(sock, 'close')
  return Buffer.concat(chunks).toString()
}

/** What slowShare needs of a tap test. */
interface Checks {
  teardown: (fn: () => unknown) => void
  ok: (v: unknown, msg: string) => boolean
  equal: (a: unknown, b: unknown, msg: string) => boolean
}

const activeOf = (p: ServiceProxy): number => p.status()[0]?.active ?? -1

/**
 * One slow endpoint (it holds every connection) and three fast ones (answer and close). Requests
 * one after another; after each, waits until only the slow endpoint's connections remain open.
 * Returns how many of `n` requests went to the slow endpoint.
 */
async function slowShare (t: Checks, algorithm: string, clusterIP: string, n: number): Promise<number> {
  // The slow endpoint has the lowest address: first in the sorted list, so round-robin's first pick.
  const slow = await holdingServer(t, 'slow', '127.0.21.1')
  const fast = await Promise.all([2, 3, 4].map((i) => nameServer(t, `fast${i}`, `127.0.21.${i}`)))
  const p = testProxy(t)
  await p.apply(svcWithEndpoints(`lc-${algorithm}`, clusterIP, 80, [
    { ip: '127.0.21.1', port: slow.port }, ...fast.map((f, i) => ({ ip: `127.0.21.${i + 2}`, port: f.port }))
  ], { annotations: { 'svcproxy.io/load-balancer': algorithm } }))
  t.equal(p.status()[0]?.algorithm, algorithm, `algorithm ${algorithm}`)
  const addr = p.address(`default/lc-${algorithm}`, 80)
  let toSlow = 0
  for (let i = 0; i < n; i++) {
    const { word, sock } = await firstWord(addr.address, addr.port)
    if (word === 'slow') toSlow++
    else await once(sock, 'close')
    // The fast connection's pair is released before the next pick: active = the slow ones held.
    t.ok(await until(() => activeOf(p) === toSlow), `request ${i}: ${toSlow} connection(s) open, all at the slow endpoint`)
  }
  const slowEp = p.status()[0]?.endpoints.find((e) => e.endpoint.startsWith('127.0.21.1:'))
  t.equal(slowEp?.active, toSlow, 'the slow endpoint\'s active count is its open connections')
  return toSlow
}

t.test('least-connections: the endpoint holding connections gets no more while others are idle', async (t) => {
  const n = 20
  const lc = await slowShare(t, 'least-connections', '127.51.0.1', n)
  // Its first connection is the round-robin tie-break among idle endpoints; then it always has more.
  t.equal(lc, 1, `least-connections: ${lc} of ${n} to the slow endpoint`)
  const rr = await slowShare(t, 'round-robin', '127.51.0.2', n)
  t.equal(rr, n / 4, `round-robin (control): ${rr} of ${n}, its fair share`)
})

t.test('p2c: the same seed replays the same choices on another proxy; another seed does not', async (t) => {
  const servers = await Promise.all([1, 2, 3, 4].map((i) => holdingServer(t, `e${i}`, `127.0.22.${i}`)))
  const objects = svcWithEndpoints('p2c', '127.51.0.3', 80, servers.map((s, i) => ({ ip: `127.0.22.${i + 1}`, port: s.port })))
  const run = async (seed: number): Promise<string[]> => {
    const p = testProxy(t, { seed, loadBalancer: 'p2c' })
    await p.apply(objects)
    t.equal(p.status()[0]?.algorithm, 'p2c', '--load-balancer / loadBalancer sets the default')
    const addr = p.address('default/p2c', 80)
    const got: string[] = []
    const open: Socket[] = []
    // Each connection stays open, so the counts p2c compares are known at every pick.
    for (let i = 0; i < 16; i++) {
      const { word, sock } = await firstWord(addr.address, addr.port)
      got.push(word)
      open.push(sock)
    }
    const counts = new Map<string, number>()
    for (const w of got) counts.set(w, (counts.get(w) ?? 0) + 1)
    t.equal(counts.size, 4, `seed ${seed}: every endpoint used (${[...counts].map(([k, v]) => `${k}=${v}`).join(' ')})`)
    for (const s of open) s.destroy()
    await p.close()
    return got
  }
  const a = await run(42)
  const b = await run(42)
  t.same(b, a, `seed 42 twice: ${a.join(' ')}`)
  const c = await run(7)
  t.not(c.join(' '), a.join(' '), `seed 7 differs: ${c.join(' ')}`)
})

t.test('hash: two proxies with the same endpoints send each client address to the same endpoint', async (t) => {
  const servers = await Promise.all([1, 2, 3, 4, 5].map((i) => nameServer(t, `h${i}`, `127.0.23.${i}`)))
  const eps = servers.map((s, i) => ({ ip: `127.0.23.${i + 1}`, port: s.port }))
  // One proxy by annotation, one by its default; the second lists the endpoints in another order.
  const p1 = testProxy(t)
  await p1.apply(svcWithEndpoints('hash', '127.51.0.4', 80, eps, { annotations: { 'svcproxy.io/load-balancer': 'hash' } }))
  const p2 = testProxy(t, { loadBalancer: 'hash' })
  await p2.apply(svcWithEndpoints('hash', '127.51.0.5', 80, [...eps].reverse()))
  t.equal(p2.status()[0]?.algorithm, 'hash')
  const a1 = p1.address('default/hash', 80)
  const a2 = p2.address('default/hash', 80)
  const clients = Array.from({ length: 40 }, (_, i) => `127.88.${i >> 4}.${(i & 15) + 1}`)
  const map1 = new Map<string, string>()
  for (const c of clients) {
    const w1 = await fetchFrom(a1.address, a1.port, c)
    const w2 = await fetchFrom(a2.address, a2.port, c)
    const again = await fetchFrom(a1.address, a1.port, c)
    t.equal(w2, w1, `${c}: ${w1} on both proxies`)
    t.equal(again, w1, `${c}: the same endpoint again`)
    map1.set(c, w1)
  }
  const used = new Set(map1.values())
  t.ok(used.size >= 4, `clients spread over ${used.size} of 5 endpoints`)

  // Remove one endpoint on both: its clients move (the same way on both), the others stay put.
  const gone = 'h3'
  const left = eps.filter((_, i) => i !== 2)
  await p1.apply(svcWithEndpoints('hash', '127.51.0.4', 80, left, { annotations: { 'svcproxy.io/load-balancer': 'hash' } }))
  await p2.apply(svcWithEndpoints('hash', '127.51.0.5', 80, [...left].reverse()))
  let movedOthers = 0
  for (const c of clients) {
    const w1 = await fetchFrom(a1.address, a1.port, c)
    const w2 = await fetchFrom(a2.address, a2.port, c)
    t.equal(w2, w1, `${c}: after the removal, ${w1} on both proxies`)
    t.not(w1, gone, `${c}: not on the removed endpoint`)
    if (map1.get(c) !== gone && w1 !== map1.get(c)) movedOthers++
  }
  // Maglev moves a few tenths of a percent beyond the removed endpoint's clients.
  t.ok(movedOthers <= 2, `clients of the remaining endpoints that moved: ${movedOthers} of ${[...map1.values()].filter((w) => w !== gone).length}`)
})

t.test('hash over UDP: a client address opens its session at the same endpoint on two proxies', async (t) => {
  const servers = await Promise.all([1, 2, 3, 4].map((i) => udpServer(t, `u${i}`, `127.0.24.${i}`)))
  const eps = servers.map((s, i) => ({ ip: `127.0.24.${i + 1}`, port: s.port }))
  const p1 = testProxy(t, { loadBalancer: 'hash' })
  const p2 = testProxy(t, { loadBalancer: 'hash' })
  await p1.apply(svcWithEndpoints('uh', '127.51.0.6', 53, eps, { protocol: 'UDP' }))
  await p2.apply(svcWithEndpoints('uh', '127.51.0.7', 53, [...eps].reverse(), { protocol: 'UDP' }))
  const a1 = p1.address('default/uh', 53)
  const a2 = p2.address('default/uh', 53)
  const used = new Set<string>()
  for (let i = 1; i <= 16; i++) {
    const c = await udpClient(t, `127.89.0.${i}`)
    const r1 = await c.request('q', a1.port, a1.address, 5)
    const r2 = await c.request('q', a2.port, a2.address, 5)
    const w1 = r1?.data.toString().split(':')[0] ?? 'none'
    t.equal(r2?.data.toString().split(':')[0] ?? 'none', w1, `127.89.0.${i}: ${w1} on both proxies`)
    used.add(w1)
  }
  t.ok(used.size >= 3, `sessions spread over ${used.size} of 4 endpoints`)
})

t.test('bench/balancers.ts runs end to end and prints its three figures (tiny counts; not a performance check)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-balancers-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = join(dir, 'b.json')
  const child = spawn(process.execPath, [...process.execArgv, 'bench/balancers.ts', '--quick', '--clients', '200', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, 'exits 0', { stderr })
  t.match(stdout, /slow endpoint's share: \d+\.\d% \(round-robin \d+\.\d%, p2c \d+\.\d%\)/, 'least-connections figure')
  t.match(stdout, /identical mapping: 200 of 200/, 'hash: the same map on both proxies')
  t.match(stdout, /removing one of 10: \d+ moved \(\d+\.\d%/, 'hash: share moved')
  const json = JSON.parse(readFileSync(out, 'utf8')) as { slow: Array<{ algorithm: string, share: number }>, hash: { clients: number, identical: number } }
  t.same(json.slow.map((s) => s.algorithm), ['round-robin', 'least-connections', 'p2c'])
  t.equal(json.hash.clients, 200)
})
