// The uv engine reaches below Node's documented API (lib/internals/: process.binding's tcp_wrap,
// stream_wrap and udp_wrap, a net.Server's listening handle, dgram's state symbol), and those can
// change meaning between releases. CI runs this file with the TCP, UDP and integrity suites on
// Node 20 (npm test) and again on Node 22 and 24 (.ci/run): on each, the engine a proxy gets must
// be the one expected there. What a Node without the handles gets is test/uv-fallback.test.ts.
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import pino from 'pino'
import t from 'tap'
import { createProxy } from '../lib/index.js'
import { udpHandleOf } from '../lib/internals/uv-udp.js'

/**
 * Node major versions known to lack what the uv engine needs, where proxies fall back to the node
 * engine. None today: 20, 22 and 24 (and 26) all offer the handles. When a new Node drops them the
 * test below goes red on it; list its major here once the fallback is what we want there.
 */
const LACKS_UV: readonly number[] = []

const major = Number(process.versions.node.split('.')[0])
const expected = LACKS_UV.includes(major) ? 'node' : 'uv'

t.test(`Node ${process.version}: a proxy asking for the uv engine gets '${expected}'`, async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb() } })
  const p = createProxy({ ephemeralPorts: true, logger: pino({ level: 'info' }, sink), engine: 'uv' })
  t.teardown(() => p.close())
  t.equal(p.engine, expected)
  t.equal(lines.some((l) => l.engine === 'node'), expected === 'node', 'a fallback is logged, and only a fallback')

  // The UDP fast path (a bound dgram socket's libuv handle) is looked up on its own, per socket.
  const s = createSocket('udp4')
  t.teardown(() => s.close())
  s.bind(0, '127.0.0.1')
  await once(s, 'listening')
  t.equal(udpHandleOf(s) !== null, expected === 'uv', 'the UDP fast path goes with the uv engine')
})
