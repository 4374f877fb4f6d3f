/**
 * Read buffers both TCP engines read into, pooled so that no read allocates.
 *
 * Size adapts per socket, as nginx and HAProxy size theirs: SMALL while reads are small (an idle
 * pair holds 2 × SMALL), LARGE after a read fills a SMALL buffer, back to SMALL after a short read.
 * A buffer goes back to the pool only when nothing (no write in flight) points into it.
 */
export const SMALL_READ = 8 * 1024
export const LARGE_READ = 64 * 1024
const SMALL_POOL_MAX = 1024
const LARGE_POOL_MAX = 256

const smallPool: Buffer[] = []
const largePool: Buffer[] = []

/** A read buffer of `size` (SMALL_READ or LARGE_READ) from the pool, or a new one. */
export function takeReadBuffer (size: number): Buffer {
  const b = size === LARGE_READ ? largePool.pop() : smallPool.pop()
  return b ?? Buffer.allocUnsafeSlow(size)
}

/** Returns a read buffer nothing points into any more. */
export function giveReadBuffer (b: Buffer): void {
  if (b.length === LARGE_READ) { if (largePool.length < LARGE_POOL_MAX) largePool.push(b) } else if (b.length === SMALL_READ && smallPool.length < SMALL_POOL_MAX) smallPool.push(b)
}

/** Pool occupancy (tests and metrics). */
export function readBufferPool (): { small: number, large: number } {
  return { small: smallPool.length, large: largePool.length }
}
