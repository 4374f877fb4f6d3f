import type { Socket } from 'node:net'
import { acceptFailed, isFdExhaustion } from '../frontend/limits.js'
import { dialFailed } from './dial.js'
import type { PairBase } from './pair.js'

// How a pair on net.Socket streams ends badly, shared by the node engine (stream-engine.ts) and
// the fault path (toxic-pair.ts).

/**
 * Sends an RST instead of a FIN, so the peer sees the failure (a refused or broken service)
 * rather than a clean end. Only on a socket that is still fully open: resetting one that has
 * already seen the peer's FIN can leave the handle stuck at process exit (observed on Node 20).
 */
export function reset (s: Socket): void {
  if (s.readyState === 'open' && !s.readableEnded) s.resetAndDestroy()
  else s.destroy()
}

/** The backend socket failed: before it answered, a failed dial (the ladder goes on); after, the client is reset. */
export function backendSocketFailed (p: PairBase, client: Socket, err: NodeJS.ErrnoException): void {
  if (!p.connected) {
    // No descriptor for the backend socket: the same episode as a failed accept.
    if (isFdExhaustion(err.code ?? '')) acceptFailed(p.fe.ctx.limits, p.fe.ctx.logger, { code: err.code ?? '', noticed: 'dial', service: p.rt.id })
    dialFailed(p, err.message)
    return
  }
  if (p.reason === null) p.reason = 'backend-error'
  if (!client.destroyed) reset(client)
}
