// Both sockets of a proxied TCP connection have TCP_NODELAY on, in each engine. The uv engine sets
// it once on the listening socket and relies on Linux copying it to every accepted socket
// (lib/internals/uv-tcp.ts listenTcp); the node engine sets it per socket. Nagle on either side
// would hold small writes for up to a delayed ACK (40 ms), so this is read from the sockets
// themselves: their descriptors are handed to python3, which asks the kernel with getsockopt.
import t from 'tap'
import { spawn } from 'node:child_process'
import { connect } from 'node:net'
import { once } from 'node:events'
import { echoServer, svcWithEndpoints, testProxy } from './helpers.js'
import type { PairBase } from '../lib/tcp/pair.js'

interface WithFd { fd?: number, _handle?: { fd?: number } | null }
/** The descriptor of a uv engine Side ({ h }) or of a net.Socket (its _handle). */
function fdOf (end: unknown): number {
  const e = end as { h?: WithFd } & WithFd
  const fd = e.h?.fd ?? e._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new Error('no descriptor for this end of the pair')
  return fd
}

/** TCP_NODELAY of each descriptor, as the kernel reports it (1 = on). */
async function noDelayOf (fds: number[]): Promise<number[]> {
  const script = 'import socket, sys\n' +
    'for fd in range(3, 3 + int(sys.argv[1])):\n' +
    '    s = socket.socket(fileno=fd)\n' +
    '    print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))\n' +
    '    s.detach()\n'
  const py = spawn('python3', ['-c', script, String(fds.length)], { stdio: ['ignore', 'pipe', 'inherit', ...fds] })
  let out = ''
  py.stdout?.on('data', (c: Buffer) => { out += c.toString() })
  const [code] = await once(py, 'exit') as [number | null]
  if (code !== 0) throw new Error(`python3 exited with ${String(code)} (it is needed here: Debian's python3)`)
  return out.trim().split('\n').map(Number)
}

for (const engine of ['uv', 'node'] as const) {
  t.test(`engine ${engine}: the client and the backend sockets of a pair have TCP_NODELAY on`, async (t) => {
    const backend = await echoServer(t)
    const p = testProxy(t, { engine })
    await p.apply(svcWithEndpoints('nd', '127.93.0.1', 80, [{ ip: '127.0.0.1', port: backend.port }]))
    const a = p.address('default/nd', 80)
    const c = connect({ host: a.address, port: a.port })
    t.teardown(() => { c.destroy() })
    c.write('ping')
    await once(c, 'data') // the pair is established both ways
    const pairs = [...p.dataplane.frontends.values()].flatMap((fe) => [...((fe as unknown as { pairs?: Set<PairBase> }).pairs ?? [])])
    t.equal(pairs.length, 1, 'one pair')
    const pair = pairs[0] as unknown as { client: unknown, backend: unknown }
    const got = await noDelayOf([fdOf(pair.client), fdOf(pair.backend)])
    t.same(got, [1, 1], 'client side and backend side: TCP_NODELAY = 1')
  })
}

t.test('the probe can fail: a socket without TCP_NODELAY reads 0', async (t) => {
  const backend = await echoServer(t)
  const c = connect({ host: '127.0.0.1', port: backend.port, noDelay: false })
  t.teardown(() => { c.destroy() })
  await once(c, 'connect')
  t.same(await noDelayOf([fdOf(c)]), [0])
})
