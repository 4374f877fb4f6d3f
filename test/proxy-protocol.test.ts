// PROXY protocol to endpoints (issue 14, part 1): the encoders against the spec's byte layout
// (haproxy's proxy-protocol.txt), then a real consumer, nginx from Debian's packages, started by
// this test, answering with what it decoded ($proxy_protocol_addr and friends), for v1 and v2,
// both engines, a service address and a wildcard (node port) listener. UDP: v2 before every
// datagram, read by this file's own decoder (nginx takes no PROXY protocol on UDP listeners).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ValidationError } from '../lib/index.js'
import { encodeV1, encodeV2, tcpHeader, unmapped, V1_MAX_LENGTH } from '../lib/frontend/proxy-protocol.js'
import type { FrontendSpec } from '../lib/frontend/contract.js'
import { freePort, listen, svcWithEndpoints, testProxy, until } from './helpers.js'

const SIG = '0d0a0d0a000d0a515549540a'
const GET = 'GET / HTTP/1.0\r\nHost: svc\r\n\r\n'

// ---------------------------------------------------------------------------------------------
// An independent decoder of the spec's layout (section 2.2): not the encoder read backwards.
interface Decoded { version: 1 | 2, command: string, family: string, src: string, dst: string, sport: number, dport: number, length: number }

function decode (b: Buffer): Decoded | null {
  if (b.subarray(0, 6).toString('latin1') === 'PROXY ') {
    const end = b.indexOf('\r\n')
    if (end < 0 || end + 2 > V1_MAX_LENGTH) return null
    const f = b.subarray(6, end).toString('latin1').split(' ')
    if (f[0] === 'UNKNOWN') return { version: 1, command: 'PROXY', family: 'UNKNOWN', src: '', dst: '', sport: 0, dport: 0, length: end + 2 }
    if (f.length !== 5) return null
    return { version: 1, command: 'PROXY', family: f[0] ?? '', src: f[1] ?? '', dst: f[2] ?? '', sport: Number(f[3]), dport: Number(f[4]), length: end + 2 }
  }
  if (b.length < 16 || b.subarray(0, 12).toString('hex') !== SIG) return null
  const vc = b[12] as number
  if (vc >> 4 !== 2) return null
  const command = (vc & 0xf) === 1 ? 'PROXY' : (vc & 0xf) === 0 ? 'LOCAL' : '?'
  const fam = b[13] as number
  const len = b.readUInt16BE(14)
  const a = b.subarray(16, 16 + len)
  const transport = (fam & 0xf) === 1 ? 'TCP' : (fam & 0xf) === 2 ? 'UDP' : ''
  if (fam >> 4 === 1 && len >= 12) {
    const ip = (o: number): string => [...a.subarray(o, o + 4)].join('.')
    return { version: 2, command, family: `${transport}4`, src: ip(0), dst: ip(4), sport: a.readUInt16BE(8), dport: a.readUInt16BE(10), length: 16 + len }
  }
  if (fam >> 4 === 2 && len >= 36) {
    const ip = (o: number): string => Array.from({ length: 8 }, (_, i) => a.readUInt16BE(o + 2 * i).toString(16)).join(':')
    return { version: 2, command, family: `${transport}6`, src: ip(0), dst: ip(16), sport: a.readUInt16BE(32), dport: a.readUInt16BE(34), length: 16 + len }
  }
  return { version: 2, command, family: 'UNSPEC', src: '', dst: '', sport: 0, dport: 0, length: 16 + len }
}

// ---------------------------------------------------------------------------------------------
t.test('v1: the text line of the spec (TCP4, TCP6, UNKNOWN)', async (t) => {
  // The spec's own example (2.1).
  t.equal(encodeV1('192.168.0.1', 56324, '192.168.0.11', 443).toString('latin1'), 'PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n')
  t.equal(encodeV1('2001:db8::1', 1234, '2001:db8::2', 80).toString('latin1'), 'PROXY TCP6 2001:db8::1 2001:db8::2 1234 80\r\n')
  // A dual-stack listener's IPv4 client, in IPv4's form.
  t.equal(encodeV1('::ffff:10.1.2.3', 5000, '::ffff:10.0.0.1', 8080).toString('latin1'), 'PROXY TCP4 10.1.2.3 10.0.0.1 5000 8080\r\n')
  t.equal(encodeV1('::ffff:10.1.2.3', 5000, '10.0.0.1', 8080).toString('latin1'), 'PROXY TCP4 10.1.2.3 10.0.0.1 5000 8080\r\n')
  // Addresses of two families: UNKNOWN (the receiver uses the connection's own).
  t.equal(encodeV1('10.1.2.3', 5000, '2001:db8::2', 80).toString('latin1'), 'PROXY UNKNOWN\r\n')
  // The longest line fits the spec's 107 bytes.
  const longest = encodeV1('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 65535)
  t.ok(longest.length <= V1_MAX_LENGTH, `${longest.length} bytes <= ${V1_MAX_LENGTH}`)
  t.same(decode(longest), { version: 1, command: 'PROXY', family: 'TCP6', src: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', dst: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', sport: 65535, dport: 65535, length: longest.length })
})

t.test('v2: signature, 0x21, family/transport, length, addresses, ports (spec 2.2)', async (t) => {
  // IPv4 TCP: 16 bytes of header, 12 of addresses.
  t.equal(encodeV2('TCP', '192.168.0.1', 56324, '192.168.0.11', 443).toString('hex'),
    SIG + '21' + '11' + '000c' + 'c0a80001' + 'c0a8000b' + 'dc04' + '01bb')
  // IPv4 UDP: 0x12.
  t.equal(encodeV2('UDP', '127.77.0.5', 40000, '127.60.0.2', 53).toString('hex'),
    SIG + '21' + '12' + '000c' + '7f4d0005' + '7f3c0002' + '9c40' + '0035')
  // IPv6 TCP: 0x21, 36 bytes of addresses.
  t.equal(encodeV2('TCP', '2001:db8::1', 1234, 'fd00:1:2::a', 80).toString('hex'),
    SIG + '21' + '21' + '0024' + '20010db8000000000000000000000001' + 'fd00000100020000000000000000000a' + '04d2' + '0050')
  // IPv6 UDP: 0x22; '::1', a v4-mapped source in IPv6 form, a zone dropped.
  t.equal(encodeV2('UDP', '::ffff:1.2.3.4', 7, '::1', 9).toString('hex'),
    SIG + '21' + '22' + '0024' + '00000000000000000000ffff01020304' + '00000000000000000000000000000001' + '0007' + '0009')
  t.equal(encodeV2('TCP', 'fe80::1%eth0', 1, 'fe80::2', 2).subarray(16, 48).toString('hex'), 'fe800000000000000000000000000001' + 'fe800000000000000000000000000002')
  t.equal(encodeV2('TCP', '1::', 1, '::', 2).subarray(16, 48).toString('hex'), '00010000000000000000000000000000' + '00000000000000000000000000000000')
  // Two families: PROXY with AF_UNSPEC and no addresses.
  t.equal(encodeV2('TCP', '10.0.0.1', 1, '2001:db8::2', 2).toString('hex'), SIG + '21' + '00' + '0000')
  t.same(decode(encodeV2('UDP', '10.9.8.7', 65535, '10.0.0.1', 1)), { version: 2, command: 'PROXY', family: 'UDP4', src: '10.9.8.7', dst: '10.0.0.1', sport: 65535, dport: 1, length: 28 })
  t.equal(unmapped('::FFFF:1.2.3.4'), '::ffff:1.2.3.4', 'only the lower-case mapped prefix is unmapped; an odd case stays IPv6')
})

t.test('a wildcard listener names the address the client reached (getsockname / localAddress)', async (t) => {
  const spec: FrontendSpec = { key: 'TCP/0.0.0.0/30080', protocol: 'TCP', host: '0.0.0.0', port: 30080, kind: 'nodePort', local: false, runtimeId: 'x' }
  const host = { spec, boundPort: 30080 }
  const uvLike = { getsockname: (out: { address?: string, port?: number }) => { out.address = '10.0.0.7'; out.port = 30080; return 0 } }
  t.equal(tcpHeader(host, 'v1', '10.9.9.9', 5555, uvLike).toString('latin1'), 'PROXY TCP4 10.9.9.9 10.0.0.7 5555 30080\r\n')
  t.equal(tcpHeader(host, 'v1', '10.9.9.9', 5556, { localAddress: '10.0.0.8', localPort: 30080 }).toString('latin1'), 'PROXY TCP4 10.9.9.9 10.0.0.8 5556 30080\r\n')
  const onVip = { spec: { ...spec, key: 'TCP/127.60.0.1/80', host: '127.60.0.1', port: 80, kind: 'clusterIP' as const }, boundPort: 80 }
  t.same(decode(tcpHeader(onVip, 'v2', '127.77.0.1', 1000, {})), { version: 2, command: 'PROXY', family: 'TCP4', src: '127.77.0.1', dst: '127.60.0.1', sport: 1000, dport: 80, length: 28 })
})

t.test('the annotation is validated: a clear error naming it and the allowed values; v1 refused on UDP', async (t) => {
  const p = testProxy(t)
  const bad = async (objs: unknown[]): Promise<string> => {
    try { await p.apply(objs); return 'accepted' } catch (e) { return e instanceof ValidationError ? e.message : String(e) }
  }
  const m1 = await bad(svcWithEndpoints('pp-bad', '127.60.1.1', 80, [], { annotations: { 'svcproxy.io/proxy-protocol': 'v3' } }))
  t.match(m1, /metadata\.annotations\["svcproxy\.io\/proxy-protocol"\].*expected one of none, v1, v2, got "v3"/)
  const m2 = await bad(svcWithEndpoints('pp-udp', '127.60.1.2', 53, [], { protocol: 'UDP', annotations: { 'svcproxy.io/proxy-protocol': 'v1' } }))
  t.match(m2, /svcproxy\.io\/proxy-protocol.*expected v2 or none on a service with a UDP port.*got "v1"/)
  t.equal(p.status().length, 0, 'an invalid change changes nothing')
  await p.apply(svcWithEndpoints('pp-ok', '127.60.1.3', 53, [], { protocol: 'UDP', annotations: { 'svcproxy.io/proxy-protocol': 'v2' } }))
  t.equal(p.status()[0]?.proxyProtocol, 'v2')
})

// ---------------------------------------------------------------------------------------------
// nginx, started by this test: an http server and a stream server, both `listen … proxy_protocol`,
// each answering with what it read from the header.
interface Nginx { http: number, stream: number }

const STREAM_MODULE = ['/usr/lib/nginx/modules/ngx_stream_module.so', '/usr/share/nginx/modules/ngx_stream_module.so'].find((p) => existsSync(p))

async function startNginx (t: { teardown: (fn: () => unknown) => void, fail: (msg: string) => unknown }): Promise<Nginx | null> {
  const probe = spawnSync('nginx', ['-v'], { encoding: 'utf8' })
  if (probe.error !== undefined || STREAM_MODULE === undefined) {
    t.fail(`nginx ${probe.error !== undefined ? 'not found on PATH' : 'has no stream module'}: install Debian's packages (apt-get install -y nginx libnginx-mod-stream; .ci/run does it where missing)`)
    return null
  }
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-nginx-'))
  const http = await freePort('127.0.0.1')
  const stream = await freePort('127.0.0.1')
  const answer = '"$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port"'
  writeFileSync(join(dir, 'nginx.conf'), [
    `load_module ${STREAM_MODULE};`,
    'daemon off;', 'master_process off;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log info;`,
    'events { worker_connections 256; }',
    'http {',
    '  access_log off;',
    `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
    `  server { listen 127.0.0.1:${http} proxy_protocol; location / { default_type text/plain; return 200 ${answer}; } }`,
    '}',
    `stream { server { listen 127.0.0.1:${stream} proxy_protocol; return ${answer}; } }`,
  ].join('\n'))
  const child: ChildProcess = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'inherit', 'inherit'] })
  let exited = false
  child.on('exit', () => { exited = true })
  t.teardown(async () => {
    if (!exited) { child.kill('SIGKILL'); await once(child, 'exit') }
    rmSync(dir, { recursive: true, force: true })
  })
  // Ready once both answer a client that sends its own (v1) header.
  const hello = 'PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n'
  const up = await until(async () => exited || ((await answerOf('127.0.0.1', http, hello + GET)).endsWith('192.0.2.1:1 192.0.2.2:2') && (await answerOf('127.0.0.1', stream, hello)) === '192.0.2.1:1 192.0.2.2:2'))
  if (!up || exited) {
    t.fail(`nginx did not start: ${existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8').slice(-800) : 'no error log'}`)
    return null
  }
  return { http, stream }
}

/** Connects (from `local` when given), sends `send`, reads until the peer closes. */
function answerOf (host: string, port: number, send: string, local?: string): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s: Socket = connect({ host, port, ...(local === undefined ? {} : { localAddress: local }) })
    s.on('connect', () => { if (send !== '') s.write(send) })
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', () => resolve(''))
    s.on('close', () => resolve(Buffer.concat(chunks).toString()))
  })
}

/** Like answerOf, also returning the client's own port (what the header must carry). */
async function ask (host: string, port: number, send: string, local: string): Promise<{ body: string, localPort: number }> {
  let localPort = 0
  const body = await new Promise<string>((resolve) => {
    const chunks: Buffer[] = []
    const s: Socket = connect({ host, port, localAddress: local })
    s.on('connect', () => { localPort = s.localPort ?? 0; if (send !== '') s.write(send) })
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', (e) => resolve(`ERR ${e.message}`))
    s.on('close', () => resolve(Buffer.concat(chunks).toString()))
  })
  return { body: body.includes('\r\n\r\n') ? body.slice(body.indexOf('\r\n\r\n') + 4) : body, localPort }
}

t.test('nginx reads the client and the address it connected to, v1 and v2, both engines', async (t) => {
  const ng = await startNginx(t)
  if (ng === null) return
  let n = 0
  for (const engine of ['uv', 'node'] as const) {
    for (const mode of ['v1', 'v2'] as const) {
      const p = testProxy(t, { engine })
      const vip = (svc: string): string => `127.61.${engine === 'uv' ? 1 : 2}.${(mode === 'v1' ? 1 : 3) + (svc === 'web' ? 0 : 1)}`
      const ann = { annotations: { 'svcproxy.io/proxy-protocol': mode } }
      await p.apply([
        ...svcWithEndpoints('web', vip('web'), 80, [{ ip: '127.0.0.1', port: ng.http }], ann),
        ...svcWithEndpoints('raw', vip('raw'), 81, [{ ip: '127.0.0.1', port: ng.stream }], ann),
      ])
      t.equal(p.status().find((s) => s.name === 'web')?.proxyProtocol, mode, `${engine} ${mode}: in status`)
      for (const [svc, send] of [['web', GET], ['raw', '']] as const) {
        const addr = p.address(`default/${svc}`, svc === 'web' ? 80 : 81)
        const client = `127.77.${++n}.${10 + n}`
        const r = await ask(addr.address, addr.port, send, client)
        t.equal(r.body, `${client}:${r.localPort} ${vip(svc)}:${addr.port}`, `${engine} ${mode} ${svc === 'web' ? 'http' : 'stream'}: nginx saw the client and the clusterIP:port`)
      }
      await p.close()
    }
  }
})

t.test('the daemon-wide default, a service opting out, and a node port on 0.0.0.0', async (t) => {
  const ng = await startNginx(t)
  if (ng === null) return
  // What an endpoint receives first, byte for byte.
  const firstBytes: Buffer[] = []
  const recorder = createServer((s) => { s.once('data', (d: Buffer) => { firstBytes.push(d); s.end('ok') }); s.on('error', () => {}) })
  const recPort = await listen(recorder, '127.0.0.1')
  t.teardown(() => recorder.close())

  for (const engine of ['uv', 'node'] as const) {
    const e = engine === 'uv' ? 1 : 2
    const p = testProxy(t, { engine, proxyProtocol: 'v2' })
    await p.apply([
      ...svcWithEndpoints('dflt', `127.68.${e}.1`, 80, [{ ip: '127.0.0.1', port: ng.stream }]),
      ...svcWithEndpoints('off', `127.68.${e}.2`, 80, [{ ip: '127.0.0.1', port: recPort }], { annotations: { 'svcproxy.io/proxy-protocol': 'none' } }),
      ...svcWithEndpoints('np', `127.68.${e}.3`, 80, [{ ip: '127.0.0.1', port: ng.stream }], { spec: { type: 'NodePort' } }),
    ])
    const st = p.status()
    t.same(st.map((s) => [s.name, s.proxyProtocol]).sort(), [['dflt', 'v2'], ['np', 'v2'], ['off', 'none']])

    const a = p.address('default/dflt', 80)
    const r = await ask(a.address, a.port, '', `127.77.10${e}.1`)
    t.equal(r.body, `127.77.10${e}.1:${r.localPort} 127.68.${e}.1:${a.port}`, `${engine}: no annotation: the --proxy-protocol default (v2)`)

    const off = p.address('default/off', 80)
    firstBytes.length = 0
    const ro = await ask(off.address, off.port, 'hello', `127.77.10${e}.2`)
    t.equal(ro.body, 'ok')
    t.equal(firstBytes[0]?.toString(), 'hello', `${engine}: annotation none: the endpoint gets the client's bytes, no header`)

    // The node port listens on 0.0.0.0 (the default --bind-address): the header names the node
    // address the client reached, found with getsockname (uv) or localAddress (node).
    const np = st.find((s) => s.name === 'np')?.frontends.find((f) => f.kind === 'nodePort')
    t.ok(np !== undefined && np.address === '0.0.0.0' && np.boundPort > 0, `${engine}: a node port on 0.0.0.0`)
    for (const nodeAddr of ['127.0.0.9', `127.69.${e}.4`]) {
      const rn = await ask(nodeAddr, np?.boundPort ?? 0, '', `127.77.10${e}.3`)
      t.equal(rn.body, `127.77.10${e}.3:${rn.localPort} ${nodeAddr}:${np?.boundPort ?? 0}`, `${engine}: node port reached at ${nodeAddr}`)
    }
    await p.close()
  }
})

t.test('UDP: a v2 header (UDP4) before every datagram, one header per session, replies unchanged', async (t) => {
  for (const engine of ['uv', 'node'] as const) {
    const got: Buffer[] = []
    const ep = createSocket('udp4')
    ep.on('message', (m, r) => { got.push(m); const d = decode(m); ep.send(d === null ? m : m.subarray(d.length), r.port, r.address) })
    ep.bind(0, '127.0.0.1')
    await once(ep, 'listening')
    t.teardown(() => ep.close())
    const p = testProxy(t, { engine })
    const vip = engine === 'uv' ? '127.64.0.1' : '127.64.0.2'
    await p.apply(svcWithEndpoints('dns', vip, 53, [{ ip: '127.0.0.1', port: ep.address().port }], { protocol: 'UDP', annotations: { 'svcproxy.io/proxy-protocol': 'v2' } }))
    t.equal(p.status()[0]?.proxyProtocol, 'v2')
    const addr = p.address('default/dns', 53)
    const client = createSocket('udp4')
    client.bind(0, '127.77.200.1')
    await once(client, 'listening')
    t.teardown(() => client.close())
    const replies: string[] = []
    client.on('message', (m) => replies.push(m.toString()))
    for (const msg of ['one', 'two', 'three']) client.send(msg, addr.port, addr.address)
    t.ok(await until(() => replies.length === 3), `${engine}: three replies`)
    t.same(replies.sort(), ['one', 'three', 'two'], 'the endpoint answers the payload, the header taken off')
    for (const m of got) {
      const d = decode(m)
      t.same(d, { version: 2, command: 'PROXY', family: 'UDP4', src: '127.77.200.1', dst: vip, sport: client.address().port, dport: addr.port, length: 28 }, `${engine}: the datagram's header`)
    }
    await p.close()
  }
})

t.test('a flag default of v1 leaves UDP ports without a header (v1 has no UDP form)', async (t) => {
  const got: Buffer[] = []
  const ep = createSocket('udp4')
  ep.on('message', (m, r) => { got.push(m); ep.send(m, r.port, r.address) })
  ep.bind(0, '127.0.0.1')
  await once(ep, 'listening')
  t.teardown(() => ep.close())
  const p = testProxy(t, { proxyProtocol: 'v1' })
  await p.apply(svcWithEndpoints('u', '127.64.0.3', 53, [{ ip: '127.0.0.1', port: ep.address().port }], { protocol: 'UDP' }))
  t.equal(p.status()[0]?.proxyProtocol, 'none')
  const addr = p.address('default/u', 53)
  const client = createSocket('udp4')
  t.teardown(() => client.close())
  const replies: string[] = []
  client.on('message', (m) => replies.push(m.toString()))
  client.send('plain', addr.port, addr.address)
  t.ok(await until(() => replies.length === 1))
  t.equal(got[0]?.toString(), 'plain')
})

t.test('the header, then exactly the client\'s bytes: a 1 MiB upload, a client that half-closes at once, one that waits for the server', async (t) => {
  // An endpoint that reads everything until the client's FIN, then answers with what it got:
  // the header decoded, and the length and hash of the rest.
  const { createHash, randomBytes } = await import('node:crypto')
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = []
    s.on('error', () => {})
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('end', () => {
      const all = Buffer.concat(chunks)
      const d = decode(all)
      const rest = d === null ? all : all.subarray(d.length)
      s.end(JSON.stringify({ header: d, length: rest.length, sha: createHash('sha256').update(rest).digest('hex') }))
    })
  })
  const port = await listen(server, '127.0.0.1')
  t.teardown(() => server.close())
  // A server that speaks first: greets once the header is in (as nginx does), before any client byte.
  const greeter = createServer((s) => {
    s.on('error', () => {})
    s.once('data', (d: Buffer) => { const h = decode(d); s.end(h === null ? 'no header' : `hello ${h.src}`) })
  })
  const gport = await listen(greeter, '127.0.0.1')
  t.teardown(() => greeter.close())
  const payload = randomBytes(1 << 20)
  const sha = createHash('sha256').update(payload).digest('hex')
  for (const engine of ['uv', 'node'] as const) {
    for (const mode of ['v1', 'v2'] as const) {
      const p = testProxy(t, { engine, proxyProtocol: mode })
      const vip = `127.65.${engine === 'uv' ? 1 : 2}.${mode === 'v1' ? 1 : 2}`
      const gvip = `127.65.${engine === 'uv' ? 3 : 4}.${mode === 'v1' ? 1 : 2}`
      await p.apply([...svcWithEndpoints('sink', vip, 80, [{ ip: '127.0.0.1', port }]), ...svcWithEndpoints('greet', gvip, 25, [{ ip: '127.0.0.1', port: gport }])])
      const a = p.address('default/sink', 80)
      const send = (data: Buffer | null): Promise<{ header: Decoded | null, length: number, sha: string, localPort: number }> => new Promise((resolve, reject) => {
        const chunks: Buffer[] = []
        const s = connect({ host: a.address, port: a.port, localAddress: '127.77.50.1', allowHalfOpen: true })
        let localPort = 0
        s.on('connect', () => { localPort = s.localPort ?? 0; if (data === null) s.end(); else s.end(data) })
        s.on('data', (d: Buffer) => chunks.push(d))
        s.on('error', reject)
        s.on('close', () => { try { resolve({ ...JSON.parse(Buffer.concat(chunks).toString()), localPort }) } catch (e) { reject(e) } })
      })
      const big = await send(payload)
      t.same(big.header, { version: mode === 'v1' ? 1 : 2, command: 'PROXY', family: 'TCP4', src: '127.77.50.1', dst: vip, sport: big.localPort, dport: a.port, length: mode === 'v1' ? big.header?.length : 28 }, `${engine} ${mode}: header before a 1 MiB upload`)
      t.equal(big.length, payload.length, `${engine} ${mode}: every byte after it`)
      t.equal(big.sha, sha, `${engine} ${mode}: in order, intact`)
      const empty = await send(null)
      t.equal(empty.header?.src, '127.77.50.1', `${engine} ${mode}: a client that half-closes at once still sends the header first`)
      t.equal(empty.length, 0)
      const g = p.address('default/greet', 25)
      const r = await ask(g.address, g.port, '', '127.77.50.2')
      t.equal(r.body, 'hello 127.77.50.2', `${engine} ${mode}: a silent client: the header goes alone and the server greets`)
      await p.close()
    }
  }
})

// ---------------------------------------------------------------------------------------------
// UDP against a real consumer: PowerDNS Recursor (Debian's pdns-recursor) takes PROXY protocol v2
// on UDP from the addresses in proxy-protocol-from, and its Lua hook sees the addresses the header
// carries (dq.remoteaddr, dq.localaddr): it answers a TXT query for pp.test with them.
const DNS_QUERY_NAME = Buffer.from([2, 0x70, 0x70, 4, 0x74, 0x65, 0x73, 0x74, 0]) // pp.test.

function dnsQuery (id: number): Buffer {
  return Buffer.concat([Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), DNS_QUERY_NAME, Buffer.from([0, 16, 0, 1])])
}

/** The id and the first TXT string of an answer to dnsQuery (its answer right after the question). */
function dnsTxt (m: Buffer): { id: number, txt: string } | null {
  const at = 12 + DNS_QUERY_NAME.length + 4
  if (m.length < at + 13 || m.readUInt16BE(6) < 1 || ((m[at] as number) & 0xc0) !== 0xc0 || m.readUInt16BE(at + 2) !== 16) return null
  const len = m[at + 12] as number
  return { id: m.readUInt16BE(0), txt: m.subarray(at + 13, at + 13 + len).toString('latin1') }
}

async function startRecursor (t: { teardown: (fn: () => unknown) => void, fail: (msg: string) => unknown }): Promise<number | null> {
  const probe = spawnSync('pdns_recursor', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined) {
    t.fail('pdns_recursor not found on PATH: install Debian\'s pdns-recursor (apt-get install -y pdns-recursor; .ci/run does it where missing)')
    return null
  }
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-recursor-'))
  const port = await freePort('127.0.0.1')
  writeFileSync(join(dir, 'pp.lua'), [
    'function preresolve(dq)',
    '  if dq.qname:equal("pp.test.") then',
    '    dq.variable = true -- the answer depends on the header: never from the packet cache',
    '    dq:addAnswer(pdns.TXT, \'"\' .. dq.remoteaddr:toStringWithPort() .. \' \' .. dq.localaddr:toStringWithPort() .. \'"\')',
    '    return true',
    '  end',
    '  return false',
    'end',
  ].join('\n'))
  writeFileSync(join(dir, 'recursor.conf'), [
    // allow-from applies to the address a header carries: the test's clients (127/8) and the probe's (10/8).
    'local-address=127.0.0.1', `local-port=${port}`, 'proxy-protocol-from=127.0.0.0/8', 'allow-from=127.0.0.0/8, 10.0.0.0/8', `lua-dns-script=${dir}/pp.lua`,
    `socket-dir=${dir}`, 'daemon=no', 'threads=1', 'disable-syslog=yes', 'quiet=yes',
  ].join('\n'))
  let log = ''
  const child: ChildProcess = spawn('pdns_recursor', [`--config-dir=${dir}`], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.on('data', (d: Buffer) => { log += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  let exited = false
  child.on('exit', () => { exited = true })
  t.teardown(async () => {
    if (!exited) { child.kill('SIGKILL'); await once(child, 'exit') }
    rmSync(dir, { recursive: true, force: true })
  })
  // Ready once it answers a query that carries its own header.
  const s = createSocket('udp4')
  let ready = false
  s.on('message', (m) => { if (dnsTxt(m)?.txt === '10.0.0.1:1 10.0.0.2:2') ready = true })
  const up = await until(() => {
    if (exited || ready) return true
    s.send(Buffer.concat([encodeV2('UDP', '10.0.0.1', 1, '10.0.0.2', 2), dnsQuery(1)]), port, '127.0.0.1')
    return false
  })
  s.close()
  if (!up || !ready) {
    t.fail(`pdns_recursor did not answer: ${log.slice(-800)}`)
    return null
  }
  return port
}

t.test('UDP v2 read by a real consumer: PowerDNS Recursor sees the client and the clusterIP, every datagram', async (t) => {
  const port = await startRecursor(t)
  if (port === null) return
  for (const engine of ['uv', 'node'] as const) {
    const p = testProxy(t, { engine })
    const vip = engine === 'uv' ? '127.66.0.1' : '127.66.0.2'
    await p.apply(svcWithEndpoints('dns', vip, 53, [{ ip: '127.0.0.1', port }], { protocol: 'UDP', annotations: { 'svcproxy.io/proxy-protocol': 'v2' } }))
    const addr = p.address('default/dns', 53)
    const client = createSocket('udp4')
    client.bind(0, `127.77.${engine === 'uv' ? 60 : 61}.1`)
    await once(client, 'listening')
    t.teardown(() => client.close())
    const answers = new Map<number, string>()
    client.on('message', (m) => { const a = dnsTxt(m); if (a !== null) answers.set(a.id, a.txt) })
    // Three queries in one session: the recursor reads a header before each one.
    for (const id of [101, 102, 103]) client.send(dnsQuery(id), addr.port, addr.address)
    t.ok(await until(() => answers.size === 3), `${engine}: three answers`)
    const want = `127.77.${engine === 'uv' ? 60 : 61}.1:${client.address().port} ${vip}:${addr.port}`
    t.same([...answers.entries()].sort(), [[101, want], [102, want], [103, want]], `${engine}: the recursor saw the client and the clusterIP:port in each datagram's header`)
    await p.close()
  }
})

t.test('the flag: a bad --proxy-protocol is refused naming it; status shows the mode per port', async (t) => {
  const { runCli } = await import('./helpers.js')
  const { renderStatus } = await import('../lib/cli/status.js')
  const r = await runCli(['run', '--config', '/nonexistent.json', '--proxy-protocol', 'v3', '--healthz-bind-address', '', '--metrics-bind-address', ''])
  t.not(r.code, 0)
  t.match(r.stderr, /--proxy-protocol: expected none, v1, v2, got "v3"/)
  const p = testProxy(t, { proxyProtocol: 'v1' })
  await p.apply([
    ...svcWithEndpoints('tcp1', '127.60.2.1', 80, []),
    ...svcWithEndpoints('udp1', '127.60.2.2', 53, [], { protocol: 'UDP' }),
    ...svcWithEndpoints('tcp0', '127.60.2.3', 80, [], { annotations: { 'svcproxy.io/proxy-protocol': 'none' } }),
  ])
  const lines = renderStatus({ revision: 1, services: p.status() })
  const row = (name: string): string => lines.find((l) => l.includes(` ${name} `)) ?? ''
  t.match(row('tcp1'), /\bTCP\+proxy-v1\b/, 'the --proxy-protocol default, shown in the PROTOCOL column')
  t.match(row('udp1'), /\bUDP\b(?!\+)/, 'a UDP port under a v1 default: no header')
  t.match(row('tcp0'), /\bTCP\b(?!\+)/, 'opted out')
})
