// The TCP suites again, on the net engine: the fallback where Node does not offer the libuv
// handles the default engine drives (lib/proxy/uv.ts), and `tcpEngine: 'net'`.
import t from 'tap'
import { testProxy } from './helpers.js'

process.env.SVCPROXY_TEST_TCP_ENGINE = 'net'

t.test('the proxies below run the net engine', async (t) => {
  t.equal(testProxy(t).tcpEngine, 'net')
})

await import('./tcp.test.js')
await import('./tcp-integrity.test.js')
await import('./faults/backends.test.js')
await import('./faults/limits.test.js')
