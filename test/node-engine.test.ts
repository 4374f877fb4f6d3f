// The data-path suites again, on the node engine (net.Socket, dgram): the fallback where Node
// does not offer the libuv handles the default engine drives (lib/internals/), and `engine: 'node'`.
import t from 'tap'
import { testProxy } from './helpers.js'

process.env.SVCPROXY_TEST_ENGINE = 'node'

t.test('the proxies below run the node engine', async (t) => {
  t.equal(testProxy(t).engine, 'node')
})

await import('./tcp.test.js')
await import('./tcp-integrity.test.js')
await import('./udp.test.js')
await import('./services.test.js')
await import('./faults/backends.test.js')
await import('./faults/limits.test.js')
