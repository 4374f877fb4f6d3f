// Run by test/faults-tcp.test.ts in a child process: a proxy whose toxics hold data (latency,
// a timeout blackhole, a slow close) is closed; the process must then exit by itself, with no
// socket or timer left. Prints "held" once data is held, "closed" after close().
import { connect, createServer } from 'node:net'
import { once } from 'node:events'
import pino from 'pino'
import { createProxy } from '../lib/index.js'

const backend = createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s) })
backend.listen(0, '127.0.131.1')
await once(backend, 'listening')
const port = (backend.address() as { port: number }).port
const p = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }), engine: process.env.SVCPROXY_TEST_ENGINE === 'node' ? 'node' : 'uv' })
p.faults.add({ service: 'default/held' }, { name: 'lag', type: 'latency', stream: 'downstream', attributes: { latency: 600_000 } })
p.faults.add({ service: 'default/held' }, { name: 'hole', type: 'timeout', stream: 'upstream', attributes: { timeout: 0 } })
p.faults.add({ service: 'default/held' }, { name: 'slow', type: 'slow_close', stream: 'downstream', attributes: { delay: 600_000 } })
p.faults.add({ service: 'default/held' }, { name: 'rst', type: 'reset_peer', stream: 'downstream', attributes: { timeout: 600_000 } })
await p.apply([
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'held', namespace: 'default' }, spec: { clusterIP: '127.131.0.1', ports: [{ port: 80 }] } },
  { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'held', namespace: 'default' }, subsets: [{ addresses: [{ ip: '127.0.131.1' }], ports: [{ port }] }] },
])
p.faults.remove({ service: 'default/held' }, 'hole') // the echo must get data for the latency toxic to hold
const a = p.address('default/held', 80)
const clients = []
for (let i = 0; i < 3; i++) {
  const c = connect(a.port, a.address)
  c.on('error', () => {})
  await once(c, 'connect')
  c.write('x'.repeat(10_000))
  clients.push(c)
}
const bytes = (): number => p.faults.list().find((x) => x.name === 'lag')?.bytes ?? 0
while (bytes() < 30_000) await new Promise((resolve) => setTimeout(resolve, 10))
console.log('held')
await p.close()
backend.close()
for (const c of clients) c.destroy()
console.log('closed')
