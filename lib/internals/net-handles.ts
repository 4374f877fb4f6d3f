/**
 * The libuv handle under a net.Socket (its undocumented `_handle` field), for the node engine's
 * pooled reads (to re-wrap an accepted socket's handle: net.Server has no `onread` option).
 * Null when the field is not in the expected shape (a future Node): the caller keeps to the
 * documented API. (The uv engine listens on a handle of its own: uv-tcp.ts listenTcp.)
 */

interface WithHandle { _handle?: unknown }

/**
 * Takes the handle out of an accepted, not yet reading net.Socket (the socket is left without
 * one, to be destroyed by the caller); null when there is none.
 */
export function detachHandle (sock: object): object | null {
  const s = sock as WithHandle
  const h = s._handle
  if (h === null || typeof h !== 'object') return null
  s._handle = null
  return h
}
