// A Node without the libuv handles the uv engine drives (lib/internals/): a proxy asking for 'uv'
// gets the node engine, says so in its log, and carries TCP and UDP all the same.
//
// Absence is simulated the way it happens for real: lib/internals/binding.ts never calls
// process.binding when deprecations are made to throw (--throw-deprecation; test/cli.test.ts runs
// that case end to end), so every binding reads as missing. The flag is set before lib/ is
// imported and stays set for this file's whole process (tap runs each test file in its own): the
// bindings load on first use, once per process, and must read as missing then.
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'

process.throwDeprecation = true
// Imported after the flag is set (static imports would be hoisted above it).
const { createProxy } = await import('../lib/index.js')
const { udpHandleOf } = await import('../lib/internals/uv-udp.js')
const { fetchAll, nameServer, svcWithEndpoints, udpClient, udpServer } = await import('./helpers.js')

t.test('no libuv bindings: the node engine, logged once, carrying TCP and UDP', async (t) => {
  const tcpBackend = await nameServer(t, 'tcp-ok', '127.0.70.1')
  const udpBackend = await udpServer(t, 'udp', '127.0.70.2')
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb() } })
  const p = createProxy({ ephemeralPorts: true, logger: pino({ level: 'info' }, sink), engine: 'uv' })
  t.teardown(() => p.close())
  t.equal(p.engine, 'node')

  await p.apply([
    ...svcWithEndpoints('web', '127.70.0.1', 80, [{ ip: '127.0.70.1', port: tcpBackend.port }]),
    ...svcWithEndpoints('dns', '127.70.0.2', 53, [{ ip: '127.0.70.2', port: udpBackend.port }], { protocol: 'UDP' }),
  ])
  const web = p.address('default/web', 80)
  t.equal(await fetchAll(web.address, web.port), 'tcp-ok', 'TCP through net.Socket')
  const dns = p.address('default/dns', 53)
  const c = await udpClient(t)
  t.equal((await c.request('q', dns.port, dns.address, 3))?.data.toString(), 'udp:q', 'UDP through dgram')

  const fallbacks = lines.filter((l) => l.engine === 'node')
  t.equal(fallbacks.length, 1, 'the fallback is logged once')
  t.match(fallbacks[0], { level: 30, msg: /node engine/ }, 'at info, naming the engine used')
})

t.test('no libuv bindings: no UDP fast path either', async (t) => {
  const s = createSocket('udp4')
  t.teardown(() => s.close())
  s.bind(0, '127.0.0.1')
  await once(s, 'listening')
  t.equal(udpHandleOf(s), null)
})
