import { getSystemErrorMap, getSystemErrorName } from 'node:util'
import { processBinding } from './binding.js'

/**
 * Node's libuv TCP stream handles, reached without net.Socket (the `uv` TCP engine, tcp-uv.ts).
 *
 * Why: a net.Socket is a Duplex stream, an EventEmitter and a dozen helper objects. At one
 * connection per request, building, wiring and destroying three of them (accepted, re-wrapped,
 * backend) was most of the proxy's user CPU. The handles underneath are what net.Socket drives
 * too: `TCP` (tcp_wrap) with `readStart`/`writeBuffer`/`shutdown`/`close`, and the request
 * objects `WriteWrap`, `ShutdownWrap` and `TCPConnectWrap`. docs/performance.md has the figures.
 *
 * The bindings come from `process.binding`, which Node documents as deprecated (DEP0111,
 * documentation-only for these modules: no warning is printed). Everything is checked here,
 * once; when anything is missing or differs, `uvTcp` is null and the proxy uses the node engine.
 */

/** A libuv TCP handle (node's TCPWrap). Return values are 0 or a negative errno (UV_E*). */
export interface UvTcpHandle {
  /** Called after each read; nread is in `streamState[READ_BYTES_OR_ERROR]`. May return the next read buffer. */
  onread: ((this: never) => Buffer | undefined) | null
  readonly writeQueueSize: number
  readStart (): number
  readStop (): number
  /** Reads go into this buffer (until onread returns another one) instead of a new allocation each. */
  useUserBuffer (buf: Buffer): void
  writeBuffer (req: UvWriteReq, data: Uint8Array): number
  shutdown (req: UvShutdownReq): number
  connect (req: UvConnectReq, ip: string, port: number): number
  connect6 (req: UvConnectReq, ip: string, port: number): number
  getpeername (out: { address?: string, port?: number, family?: string }): number
  getsockname (out: { address?: string, port?: number, family?: string }): number
  setNoDelay (on: boolean): number
  close (cb?: () => void): void
  /** Close with SO_LINGER 0: the peer gets an RST. Fails (non-zero) while a shutdown is pending. */
  reset (cb?: () => void): number
}

/**
 * A listening libuv TCP handle (TCPWrap of type SERVER): what net.Server drives underneath.
 * `onconnection(err, handle)` runs per accepted connection (`handle` undefined when err < 0).
 */
export interface UvTcpServerHandle {
  onconnection: ((this: never, err: number, h?: UvTcpHandle) => void) | null
  bind (ip: string, port: number): number
  bind6 (ip: string, port: number, flags: number): number
  listen (backlog: number): number
  setNoDelay (on: boolean): number
  getsockname (out: { address?: string, port?: number, family?: string }): number
  close (cb?: () => void): void
}

/** Requests (`this` in oncomplete is the request). A write in flight: `oncomplete(status)` runs only if the write could not finish at once. */
export interface UvWriteReq { oncomplete: (this: never, status: number) => void, handle: UvTcpHandle | null, buffer?: Uint8Array | null }
export interface UvShutdownReq { oncomplete: (this: never, status: number) => void, handle: UvTcpHandle | null }
export interface UvConnectReq { oncomplete: (this: never, status: number) => void }

export interface UvTcpBinding {
  newSocket: () => UvTcpHandle
  newServer: () => UvTcpServerHandle
  newWriteReq: () => UvWriteReq
  newShutdownReq: () => UvShutdownReq
  newConnectReq: () => UvConnectReq
  /** Shared with C++: read result of the last read, and whether the last write went async. */
  state: Int32Array
  READ_BYTES_OR_ERROR: number
  LAST_WRITE_WAS_ASYNC: number
}

/** libuv's end-of-stream code (UV_EOF) and an errno the engine tests for. */
export const UV_EOF = -4095
export const UV_ENOTCONN = -107
/**
 * What a stream handle's `shutdown()` returns when it finished at once, with no callback to
 * come (node's StreamBase; net.Socket's _final tests for the same value).
 */
export const SHUTDOWN_DONE_AT_ONCE = 1

/** The remote address of a connected handle ('' and 0 when it has none). */
export function peerOf (h: UvTcpHandle): { address: string, port: number } {
  const out: { address?: string, port?: number } = {}
  h.getpeername(out)
  return { address: out.address ?? '', port: out.port ?? 0 }
}

/** 'ECONNREFUSED' for -111, and so on; a number libuv does not name is printed as it is. */
export function uvErrorName (err: number): string {
  try {
    return getSystemErrorName(err)
  } catch {
    return `error ${err}`
  }
}

/**
 * Binds and listens on host:port (an IP literal) as net.Server would (libuv sets SO_REUSEADDR;
 * an IPv6 address is dual-stack), synchronously: no net.Server, lookup or 'listening' tick,
 * which at 10,000 service ports is a fifth of a load. The error reads as net's does.
 */
export function listenTcp (uv: UvTcpBinding, host: string, port: number, backlog: number): { handle: UvTcpServerHandle | null, port: number, error: string, noDelay: boolean } {
  const h = uv.newServer()
  let err = host.includes(':') ? h.bind6(host, port, 0) : h.bind(host, port)
  if (err === 0) err = h.listen(backlog)
  if (err !== 0) {
    h.close()
    const [code, text] = getSystemErrorMap().get(err) ?? [`error ${err}`, 'unknown error']
    return { handle: null, port: 0, error: `${code}: listen ${code}: ${text} ${host}:${port}`, noDelay: false }
  }
  // Linux copies TCP_NODELAY from a listening socket to the sockets it accepts: set once here,
  // it spares a setsockopt (and a call into C++) per connection. Elsewhere: set per accept.
  const noDelay = process.platform === 'linux' && h.setNoDelay(true) === 0
  if (port !== 0) return { handle: h, port, error: '', noDelay }
  const out: { port?: number } = {}
  h.getsockname(out)
  return { handle: h, port: out.port ?? 0, error: '', noDelay }
}

type Ctor<T> = new (...args: number[]) => T

function load (): UvTcpBinding | null {
  const tcp = processBinding('tcp_wrap')
  const stream = processBinding('stream_wrap')
  if (tcp === null || stream === null) return null
  try {
    const TCP = tcp.TCP as Ctor<UvTcpHandle> | undefined
    const ConnectWrap = tcp.TCPConnectWrap as Ctor<UvConnectReq> | undefined
    const constants = tcp.constants as Record<string, unknown> | undefined
    const WriteWrap = stream.WriteWrap as Ctor<UvWriteReq> | undefined
    const ShutdownWrap = stream.ShutdownWrap as Ctor<UvShutdownReq> | undefined
    const state = stream.streamBaseState
    const rb = stream.kReadBytesOrError
    const wa = stream.kLastWriteWasAsync
    const SOCKET = constants?.SOCKET
    const SERVER = constants?.SERVER
    if (typeof TCP !== 'function' || typeof ConnectWrap !== 'function' || typeof WriteWrap !== 'function' ||
      typeof ShutdownWrap !== 'function' || !(state instanceof Int32Array) || typeof rb !== 'number' ||
      typeof wa !== 'number' || typeof SOCKET !== 'number' || typeof SERVER !== 'number') return null
    const proto = TCP.prototype as unknown as Record<string, unknown>
    for (const m of ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'shutdown', 'connect', 'connect6', 'getpeername', 'getsockname', 'setNoDelay', 'close', 'reset', 'bind', 'bind6', 'listen']) {
      if (typeof proto[m] !== 'function') return null
    }
    return {
      newSocket: () => new TCP(SOCKET),
      newServer: () => new TCP(SERVER) as unknown as UvTcpServerHandle,
      newWriteReq: () => new WriteWrap(),
      newShutdownReq: () => new ShutdownWrap(),
      newConnectReq: () => new ConnectWrap(),
      state,
      READ_BYTES_OR_ERROR: rb,
      LAST_WRITE_WAS_ASYNC: wa,
    }
  } catch {
    return null
  }
}

let loaded: UvTcpBinding | null | undefined

/**
 * The bindings, or null when this Node does not offer them as expected. Loaded on the first call
 * (a proxy asking for the uv engine), never at import: merely importing svcproxy must not touch
 * process.binding (under --pending-deprecation that prints DEP0111).
 */
export function uvTcp (): UvTcpBinding | null {
  if (loaded === undefined) loaded = load()
  return loaded
}

/**
 * What moves the bytes: 'uv' drives libuv handles directly (TCP: tcp-uv.ts; UDP: udp-handle.ts),
 * 'node' uses net.Socket and dgram as documented (tcp-stream.ts, udp.ts's fallbacks).
 */
export type Engine = 'uv' | 'node'

/** The engine a proxy asking for `wanted` gets on this Node. */
export function engineFor (wanted: Engine): Engine {
  return wanted === 'uv' && uvTcp() !== null ? 'uv' : 'node'
}
