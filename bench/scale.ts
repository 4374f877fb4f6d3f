// Control-plane scale and idle-connection memory (issue #7):
//   1. apply 10,000 services × 10 endpoints to one proxy: table time, serving time (10,000
//      listeners bound), RSS;
//   2. one endpoint change at that size: must cost O(changed), not O(all);
//   3. memory per idle connection pair: the proxy process's RSS before and after N idle pairs.
// Each measurement runs the proxy in its own child process so RSS is the proxy's alone.
//   node dist/bench/scale.js [--services 10000] [--pairs 9000] [--quick]
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createProxy } from '../lib/index.js'
import { Table } from '../lib/table/table.js'

interface Msg { type: string, [k: string]: unknown }

function manifest (services: number, endpointsEach: number): unknown[] {
  const out: unknown[] = []
  for (let i = 0; i < services; i++) {
    const name = `svc-${i}`
    out.push({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'scale' }, spec: { ports: [{ name: 'http', port: 80 }] } })
    const addresses = []
    for (let e = 0; e < endpointsEach; e++) addresses.push({ ip: `127.1.${(i * endpointsEach + e) >> 8 & 255}.${(i * endpointsEach + e) & 255}` })
    out.push({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name, namespace: 'scale' }, subsets: [{ addresses, ports: [{ name: 'http', port: 8080 }] }] })
  }
  return out
}

const rssMiB = (): number => process.memoryUsage().rss / 1048576

/** Child: the proxy under measurement. */
async function child (): Promise<void> {
  const send = (m: Msg): void => { process.send?.(m) }
  const proxy = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }) })
  process.on('message', (m: Msg) => {
    void (async () => {
      if (m.type === 'table') {
        // Control plane alone: validation + allocation + endpoint computation, no sockets.
        const docs = manifest(m.services as number, 10)
        const { parseObjects } = await import('../lib/model/document.js')
        const t0 = performance.now()
        const parsed = parseObjects(docs, '<scale>')
        const table = new Table()
        table.write(parsed.objects, [], '<scale>')
        send({ type: 'table', ms: performance.now() - t0, ports: table.allStates().length })
      } else if (m.type === 'apply') {
        const before = rssMiB()
        const t0 = performance.now()
        await proxy.apply(manifest(m.services as number, 10), '<scale>')
        const ms = performance.now() - t0
        if (global.gc !== undefined) global.gc()
        send({ type: 'apply', ms, listeners: proxy.dataplane.frontends.size, rssBefore: before, rssAfter: rssMiB() })
      } else if (m.type === 'change') {
        const i = Math.floor((m.services as number) / 2)
        const ep = { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: `svc-${i}`, namespace: 'scale' }, subsets: [{ addresses: [{ ip: '127.2.0.1' }], ports: [{ name: 'http', port: 8080 }] }] }
        const t0 = performance.now()
        const r = await proxy.apply([ep], '<change>')
        send({ type: 'change', ms: performance.now() - t0, changed: r.changed.length })
      } else if (m.type === 'idle-setup') {
        await proxy.apply([
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'idle', namespace: 'default' }, spec: { clusterIP: '127.96.99.1', ports: [{ port: 80 }] } },
          { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'idle', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.99.1' }], ports: [{ port: m.backendPort as number }] }] },
        ], '<idle>')
        if (global.gc !== undefined) global.gc()
        const a = proxy.address('default/idle', 80)
        send({ type: 'idle-setup', port: a.port, rss: rssMiB() })
      } else if (m.type === 'rss') {
        if (global.gc !== undefined) global.gc()
        send({ type: 'rss', rss: rssMiB(), open: proxy.dataplane.openCount() })
      } else if (m.type === 'stop') {
        await proxy.close()
        process.exit(0)
      }
    })()
  })
  send({ type: 'ready' })
}

function ask (c: ReturnType<typeof fork>, m: Msg): Promise<Msg> {
  c.send(m)
  return new Promise((resolve) => c.once('message', (r: Msg) => resolve(r)))
}

/** The child closes its proxy and exits; it sends no answer. */
async function stop (c: ReturnType<typeof fork>): Promise<void> {
  const exited = once(c, 'exit')
  c.send({ type: 'stop' })
  await exited
}

async function startChild (): Promise<ReturnType<typeof fork>> {
  const c = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: [...process.execArgv, '--expose-gc'] })
  await once(c, 'message')
  return c
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { services: { type: 'string', default: '10000' }, pairs: { type: 'string', default: '9000' }, quick: { type: 'boolean', default: false }, child: { type: 'boolean', default: false } } })
  if (values.child === true) return await child()
  const services = values.quick === true ? 200 : Number(values.services)
  const pairs = values.quick === true ? 200 : Number(values.pairs)
  const rows: Array<[string, string]> = []

  let c = await startChild()
  const table = await ask(c, { type: 'table', services })
  rows.push([`table only: validate + allocate + compute, ${services} svc × 10 ep`, `${(table.ms as number).toFixed(0)} ms (${String(table.ports)} service ports)`])
  const apply = await ask(c, { type: 'apply', services })
  rows.push([`apply and serve (${String(apply.listeners)} listeners bound)`, `${(apply.ms as number).toFixed(0)} ms`])
  rows.push(['proxy RSS after apply (after GC)', `${(apply.rssAfter as number).toFixed(0)} MiB (from ${(apply.rssBefore as number).toFixed(0)})`])
  const changes: number[] = []
  for (let i = 0; i < 5; i++) changes.push((await ask(c, { type: 'change', services })).ms as number)
  changes.sort((a, b) => a - b)
  rows.push(['one endpoint change at that size (median of 5)', `${(changes[2] ?? 0).toFixed(2)} ms`])
  await stop(c)

  // Idle pairs: clients and the backend live here; the proxy in its own process.
  c = await startChild()
  const held: Socket[] = []
  const backend = createServer((s) => { s.on('error', () => {}); held.push(s) })
  backend.listen(0, '127.0.99.1')
  await once(backend, 'listening')
  const bport = (backend.address() as { port: number }).port
  const setup = await ask(c, { type: 'idle-setup', backendPort: bport })
  const clients: Socket[] = []
  for (let i = 0; i < pairs; i++) {
    const s = connect(setup.port as number, '127.96.99.1')
    s.on('error', () => {})
    clients.push(s)
    if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  while (held.length < pairs) await new Promise((resolve) => setTimeout(resolve, 20))
  // One small exchange on every pair, as a real keep-alive connection would have had.
  for (const s of clients) s.write('x')
  await new Promise((resolve) => setTimeout(resolve, 500))
  const after = await ask(c, { type: 'rss' })
  const per = ((after.rss as number) - (setup.rss as number)) * 1024 / pairs
  rows.push([`idle pairs open through the proxy`, `${String(after.open)}`])
  rows.push(['proxy RSS per idle pair', `${per.toFixed(1)} KiB (${(setup.rss as number).toFixed(0)} → ${(after.rss as number).toFixed(0)} MiB)`])
  for (const s of clients) s.destroy()
  backend.close()
  for (const s of held) s.destroy()
  await stop(c)

  const w = Math.max(...rows.map((r) => r[0].length))
  process.stdout.write(`svcproxy scale bench — node ${process.version}\n`)
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(w)}  ${v}\n`)
}

main().catch((err: unknown) => { process.stderr.write(`scale bench: ${String(err)}\n`); process.exit(1) })
