import { getSystemErrorName } from 'node:util'
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

/** Requests (`this` in oncomplete is the request). A write in flight: `oncomplete(status)` runs only if the write could not finish at once. */
export interface UvWriteReq { oncomplete: (this: never, status: number) => void, handle: UvTcpHandle | null, buffer?: Uint8Array | null }
export interface UvShutdownReq { oncomplete: (this: never, status: number) => void, handle: UvTcpHandle | null }
export interface UvConnectReq { oncomplete: (this: never, status: number) => void }

export interface UvTcpBinding {
  newSocket: () => UvTcpHandle
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
    if (typeof TCP !== 'function' || typeof ConnectWrap !== 'function' || typeof WriteWrap !== 'function' ||
      typeof ShutdownWrap !== 'function' || !(state instanceof Int32Array) || typeof rb !== 'number' ||
      typeof wa !== 'number' || typeof SOCKET !== 'number') return null
    const proto = TCP.prototype as unknown as Record<string, unknown>
    for (const m of ['readStart', 'readStop', 'useUserBuffer', 'writeBuffer', 'shutdown', 'connect', 'connect6', 'getpeername', 'getsockname', 'setNoDelay', 'close', 'reset']) {
      if (typeof proto[m] !== 'function') return null
    }
    return {
      newSocket: () => new TCP(SOCKET),
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
