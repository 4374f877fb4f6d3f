import { connect, Socket, type NetConnectOpts, type SocketConstructorOpts } from 'node:net'
import { detachHandle } from '../internals/net-handles.js'
import { giveReadBuffer, LARGE_READ, SMALL_READ, takeReadBuffer } from './buffer-pool.js'

/**
 * Pooled reads for the node engine's net.Socket data path (net's `onread` option).
 *
 * By default Node allocates a fresh 64 KiB ArrayBuffer for every read. At bulk rates that
 * external memory churn starts full (Mark-Compact) GCs once the heap is not tiny (see
 * docs/performance.md), and every chunk goes through Readable.push/maybeReadMore. With `onread`
 * a socket reads into a buffer from the pool (buffer-pool.ts); the chunk is written straight to
 * the other socket.
 *
 * The rule that keeps data intact: a buffer is read into again only if the write that carried
 * its bytes completed synchronously (the peer's `writableLength` is 0 right after `write()`).
 * Otherwise the buffer is *parked* (libuv still points at it) and the next read gets another
 * one; a parked buffer returns to the pool when the peer drains.
 */

export const kReadBuf = Symbol('svcproxy.readBuf')
const kNextSize = Symbol('svcproxy.nextReadSize')
const kParked = Symbol('svcproxy.parkedBuf')

export interface BufferedSocket extends Socket {
  [kReadBuf]: Buffer | null
  [kNextSize]: number
  [kParked]: Buffer | null
}

export type ReadCallback = (this: BufferedSocket, nread: number, buf: Buffer) => boolean

// Node calls the `onread.buffer` generator without a receiver: at socket init, and right after
// each read callback. The callback records its socket here so the generator knows whose turn it is.
let current: BufferedSocket | null = null
let initial: Buffer | null = null

function nextReadBuffer (): Buffer | undefined {
  const s = current
  if (s === null) {
    initial = takeReadBuffer(SMALL_READ)
    return initial
  }
  current = null
  const size = s[kNextSize]
  if (size === 0) return undefined // keep reading into the same buffer
  s[kNextSize] = 0
  const b = takeReadBuffer(size)
  s[kReadBuf] = b
  return b
}

function init (s: BufferedSocket): BufferedSocket {
  s[kReadBuf] = initial
  s[kNextSize] = 0
  s[kParked] = null
  initial = null
  return s
}

/**
 * Call from a read callback after writing `n` bytes of `buf` to `dst` (or instead of writing,
 * with `dst` null): decides which buffer the next read uses.
 */
export function afterRelay (src: BufferedSocket, dst: Socket | null, n: number, buf: Buffer): void {
  current = src
  const size = buf.length
  if (dst !== null && dst.writableLength !== 0) {
    // libuv still holds a pointer into buf: never read into it again until the peer drains.
    if (src[kParked] === null) src[kParked] = buf
    src[kNextSize] = n === size ? LARGE_READ : size
    return
  }
  if (n === size && size === SMALL_READ) {
    giveReadBuffer(buf)
    src[kNextSize] = LARGE_READ
  } else if (size === LARGE_READ && n < SMALL_READ / 2) {
    giveReadBuffer(buf)
    src[kNextSize] = SMALL_READ
  }
}

/**
 * The read callback's whole job for one chunk: write it to `dst` and choose the next buffer.
 * Returns what `write()` returned: false stops reading until `dst` drains.
 */
export function relay (src: BufferedSocket, dst: Socket, n: number, buf: Buffer): boolean {
  if (src[kParked] !== null && dst.writableLength === 0) reclaim(src)
  const ok = dst.write(n === buf.length ? buf : buf.subarray(0, n))
  afterRelay(src, dst, n, buf)
  return ok
}

/** The peer drained: every write queued on it is done, so the parked buffer is free again. */
export function reclaim (src: BufferedSocket): void {
  const b = src[kParked]
  if (b != null) { // undefined on a socket that never used pooled reads
    src[kParked] = null
    giveReadBuffer(b)
  }
}

/** After 'close': the socket reads no more, so its read buffer returns to the pool. */
export function releaseReadBuffer (s: BufferedSocket): void {
  const b = s[kReadBuf]
  if (b == null) return // also a socket that never used pooled reads
  s[kReadBuf] = null
  giveReadBuffer(b)
  // A parked buffer may still sit in a cancelled write of the peer: leave it to the GC.
  s[kParked] = null
}

/**
 * Re-wraps an accepted socket so it reads into pooled buffers: net.Server has no `onread`
 * option. Requires the server's `pauseOnConnect` (the handle has not started reading).
 * Takes the socket's handle (internals/net-handles.ts); returns null when it is not there (a
 * future Node), and the caller keeps the socket as it is.
 */
export function adoptAccepted (sock: Socket, callback: ReadCallback): BufferedSocket | null {
  const h = detachHandle(sock)
  if (h === null) return null
  sock.destroy() // settles the server's connection count; the handle lives on in the new socket
  current = null
  const opts = { handle: h, allowHalfOpen: true, pauseOnCreate: true, onread: { buffer: nextReadBuffer, callback } }
  return init(new Socket(opts as unknown as SocketConstructorOpts) as BufferedSocket)
}

/** `net.connect` whose socket reads into pooled buffers. */
export function connectBuffered (host: string, port: number, callback: ReadCallback): BufferedSocket {
  current = null
  const opts = { host, port, allowHalfOpen: true, noDelay: true, onread: { buffer: nextReadBuffer, callback } }
  return init(connect(opts as unknown as NetConnectOpts) as BufferedSocket)
}
