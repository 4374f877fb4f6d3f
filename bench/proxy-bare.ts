// The floor for a TCP proxy in JavaScript on Node (issue 17): the uv engine's relay with nothing
// else. libuv handles from tcp_wrap (as lib/internals/uv-tcp.ts reaches them), round-robin, one
// 16 KiB buffer per side (useUserBuffer), each read written to the peer at once (writeBuffer),
// reading paused while a write is in flight, a FIN passed on with shutdown, both closed when both
// FINs are in. No accounting, limits, timers, events, retries or error reporting. Not a proxy to
// use: a measurement of what Node's handles cost per connection and per read, against which
// svcproxy's own work shows (docs/performance.md). Run by bench/floor.ts.
import { type Backends, type Endpoint, type ProxyAddresses, childConfig, failToParent, serveParent } from './child.js'
import { listenTcp, type UvShutdownReq, type UvTcpBinding, type UvTcpHandle, uvTcp, type UvWriteReq } from '../lib/internals/uv-tcp.js'

interface S { h: UvTcpHandle, peer: S | null, buf: Buffer, req: UvWriteReq, writing: boolean, eof: boolean, fin: boolean, closed: boolean }
const kS = Symbol('s')
type H = UvTcpHandle & { [kS]: S }
type R = UvWriteReq & { [kS]: S }

async function main (): Promise<void> {
  const cfg = childConfig<Backends>()
  const binding = uvTcp()
  if (binding === null) throw new Error('no tcp_wrap bindings')
  const uv: UvTcpBinding = binding
  let next = 0
  const side = (h: UvTcpHandle): S => {
    const req = uv.newWriteReq() as R
    const s: S = { h, peer: null, buf: Buffer.allocUnsafe(16384), req, writing: false, eof: false, fin: false, closed: false }
    req[kS] = s
    req.handle = h
    req.oncomplete = onWritten
    ;(h as H)[kS] = s
    h.onread = onRead
    h.useUserBuffer(s.buf)
    return s
  }
  const close = (s: S): void => { if (!s.closed) { s.closed = true; s.h.close() } }
  const done = (s: S): void => { const p = s.peer as S; if (s.eof && p.eof) { close(s); close(p) } }
  function onWritten (this: R): void {
    const s = this[kS]
    s.writing = false
    const src = s.peer as S
    if (!src.closed) src.h.readStart()
  }
  function onRead (this: H): undefined {
    const s = this[kS]
    const p = s.peer as S
    const n = uv.state[uv.READ_BYTES_OR_ERROR] as number
    if (n > 0) {
      if (p.h.writeBuffer(p.req, s.buf.subarray(0, n)) !== 0) { close(s); close(p); return }
      if (uv.state[uv.LAST_WRITE_WAS_ASYNC] !== 0) { p.req = uv.newWriteReq() as R; (p.req as R)[kS] = p; p.req.handle = p.h; p.req.oncomplete = onWritten; p.writing = true; s.h.readStop() }
      return
    }
    if (n === 0) return
    s.eof = true
    if (p.eof) { done(s); return }
    const r = uv.newShutdownReq() as UvShutdownReq
    r.handle = p.h
    r.oncomplete = () => {}
    p.h.shutdown(r)
  }
  const serve = async (backends: Endpoint[], ip: string): Promise<Endpoint> => {
    const l = listenTcp(uv, ip, 0, 4096)
    const lh = l.handle
    if (lh === null) throw new Error(l.error)
    lh.onconnection = (err: number, h?: UvTcpHandle) => {
      if (err !== 0 || h === undefined) return
      h.setNoDelay(true)
      const b = backends[next++ % backends.length] as Endpoint
      const c = side(h)
      const bh = uv.newSocket()
      bh.setNoDelay(true)
      const u = side(bh)
      c.peer = u
      u.peer = c
      const req = uv.newConnectReq()
      req.oncomplete = (status: number) => { if (status < 0) { close(c); close(u); return } c.h.readStart() }
      if (bh.connect(req, b.ip, b.port) !== 0 || bh.readStart() !== 0) { close(c); close(u) }
    }
    return { ip, port: l.port }
  }
  const out: ProxyAddresses = { http: await serve(cfg.http, '127.0.41.1'), bulk: await serve(cfg.bulk, '127.0.41.2'), udp: null, notes: { udp: 'TCP only' } }
  serveParent(out, async () => {})
}

main().catch(failToParent)
