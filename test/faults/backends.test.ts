// Fault suite (issue #8): what clients see when endpoints die, refuse, vanish or churn.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer } from 'node:net'
import t from 'tap'
import { fetchAll, listen, nameServer, svcWithEndpoints, testProxy, until } from '../helpers.js'

/** A port on `host` with nothing listening: a dial there is refused at once. */
async function refusingPort (host: string): Promise<number> {
  const s = createServer()
  const port = await listen(s, host)
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

t.test('backend killed mid-stream: the client sees the close promptly; the proxy serves on', async (t) => {
  // A real process, SIGKILLed while it streams: the kernel, not the backend, closes its socket.
  const src = "const s=require('net').createServer(c=>{c.on('error',()=>{});const b=Buffer.alloc(16384,120);const w=()=>{while(c.write(b));};c.on('drain',w);w()}).listen(0,'127.0.8.1',()=>console.log(s.address().port))"
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout, 'data') as [Buffer]
  const streamPort = Number(line.toString().trim())
  const good = await nameServer(t, 'good', '127.0.8.2')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('killed', '127.51.0.1', 80, [{ ip: '127.0.8.1', port: streamPort }, { ip: '127.0.8.2', port: good.port }]))
  const addr = p.address('default/killed', 80)

  // Round-robin: the first connection goes to the streaming backend (lowest IP).
  const client = connect({ host: addr.address, port: addr.port })
  client.on('error', () => {})
  let received = 0
  client.on('data', (c: Buffer) => { received += c.length })
  t.ok(await until(() => received > 256 * 1024, 10000), 'data is streaming through the proxy')
  const closed = once(client, 'close')
  child.kill('SIGKILL')
  // Bounded wait, not a timing assertion: a client left hanging fails here.
  const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((resolve) => setTimeout(resolve, 10000, 'hung'))])
  t.equal(outcome, 'closed', 'the client saw the backend die')
  t.ok(await until(() => p.dataplane.openCount() === 0), 'the pair was released')

  // The dead endpoint now refuses; the next one answers every new connection.
  for (let i = 0; i < 4; i++) t.equal(await fetchAll(addr.address, addr.port), 'good', `connection ${i} after the kill`)
})

t.test('backend refusing: the next endpoint answers; the client never notices', async (t) => {
  const dead = await refusingPort('127.0.8.11')
  const good = await nameServer(t, 'ok', '127.0.8.12')
  const p = testProxy(t)
  await p.apply(svcWithEndpoints('refusing', '127.51.0.2', 80, [{ ip: '127.0.8.11', port: dead }, { ip: '127.0.8.12', port: good.port }]))
  const addr = p.address('default/refusing', 80)
  const results = await Promise.all(Array.from({ length: 50 }, () => fetchAll(addr.address, addr.port)))
  t.same(results.filter((r) => r !== 'ok'), [], 'all 50 concurrent connections were answered')
  t.ok((p.status()[0]?.dialFailures ?? 0) > 0, 'the refusing endpoint was tried (and skipped)')
})

t.test('all endpoints gone, then back: new connections succeed within one table update', async (t) => {
  const a = await nameServer(t, 'a', '127.0.8.21')
  const p = testProxy(t)
  const svc = (eps: Array<{ ip: string, port: number }>): unknown[] => svcWithEndpoints('gone', '127.51.0.3', 80, eps)
  await p.apply(svc([{ ip: '127.0.8.21', port: a.port }]))
  const addr = p.address('default/gone', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'a')
  await p.apply(svc([]))
  t.equal(await fetchAll(addr.address, addr.port), 'ERR:ECONNRESET', 'no endpoints: reset, not a hang')
  await p.apply(svc([{ ip: '127.0.8.21', port: a.port }]))
  // The very next connection after the one update: no retry loop.
  t.equal(await fetchAll(addr.address, addr.port), 'a', 'served again right after the update')
})

t.test('endpoint churn every 50 ms under continuous load: zero failed requests', async (t) => {
  const live = await Promise.all(['x', 'y', 'z'].map((n, i) => nameServer(t, n, `127.0.8.${31 + i}`)))
  const deadPort = await refusingPort('127.0.8.30')
  const all = [{ ip: '127.0.8.30', port: deadPort }, ...live.map((s, i) => ({ ip: `127.0.8.${31 + i}`, port: s.port }))]
  const p = testProxy(t)
  const svc = (eps: typeof all): unknown[] => svcWithEndpoints('churn', '127.51.0.4', 80, eps)
  await p.apply(svc(all))
  const addr = p.address('default/churn', 80)

  // Seeded so a failure replays the same sequence of endpoint sets.
  let seed = Number(process.env.FAULT_SEED ?? 0x5eed)
  t.comment(`churn seed ${seed}`)
  const rand = (): number => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 2 ** 32 }
  let stop = false
  let updates = 0
  const churn = (async () => {
    while (!stop) {
      // The dead endpoint sometimes, and at least one live one always.
      const set = all.filter((_, i) => i === 0 ? rand() < 0.5 : rand() < 0.5)
      if (!set.some((e) => e.ip !== '127.0.8.30')) set.push(all[1 + Math.floor(rand() * 3)] ?? all[1]!)
      await p.apply(svc(set))
      updates++
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })()
  let ok = 0
  const failures: string[] = []
  const worker = async (): Promise<void> => {
    while (!stop) {
      const r = await fetchAll(addr.address, addr.port)
      if (r === 'x' || r === 'y' || r === 'z') ok++
      else failures.push(r)
    }
  }
  const workers = Array.from({ length: 4 }, worker)
  await new Promise((resolve) => setTimeout(resolve, 2500))
  stop = true
  await Promise.all([churn, ...workers])
  t.comment(`${ok} requests over ${updates} endpoint updates`)
  t.ok(updates >= 10, 'the endpoint set changed many times')
  t.ok(ok >= 100, 'the load ran')
  t.same(failures, [], 'no request failed')
})
