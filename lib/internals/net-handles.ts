/**
 * The libuv handle under a net.Server or net.Socket (their undocumented `_handle` field).
 * Used by the uv engine (to take accepted handles from the listening handle) and by the node
 * engine's pooled reads (to re-wrap an accepted socket's handle: net.Server has no `onread`
 * option). Both return null when the field is not in the expected shape (a future Node), and
 * the caller keeps to the documented API.
 */

interface WithHandle { _handle?: unknown }

/** The listening handle of a net.Server, to take over its `onconnection`; null when it has none in the expected shape. */
export function listenHandle (server: object): { onconnection: unknown } | null {
  const h = (server as WithHandle)._handle as { onconnection?: unknown } | null | undefined
  if (h === null || h === undefined || typeof h.onconnection !== 'function') return null
  return h as { onconnection: unknown }
}

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
