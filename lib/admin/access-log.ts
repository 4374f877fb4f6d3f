import type { Logger } from 'pino'
import type { ServiceProxy } from '../api/service-proxy.js'
import type { CloseEvent } from '../frontend/events.js'

/**
 * --access-log: one pino line per connection, written when it ends (never per chunk).
 * The line is built from the proxy's 'close' event, which the data path only constructs
 * while someone listens, so without --access-log a connection costs no event object.
 *
 * The child logger is pinned to level info, so access lines appear even with --log-level warn.
 * Returns a function that detaches it.
 */
export function attachAccessLog (proxy: ServiceProxy, logger: Logger): () => void {
  const log = logger.child({ log: 'access' }, { level: 'info' })
  const onClose = (e: CloseEvent): void => {
    log.info({
      id: e.id,
      client: e.client,
      frontend: e.frontend,
      service: e.service,
      port: e.port,
      protocol: e.protocol,
      endpoint: e.endpoint,
      bytesIn: e.bytesIn,
      bytesOut: e.bytesOut,
      durationMs: e.durationMs,
      reason: e.reason,
    }, 'connection closed')
  }
  proxy.on('close', onClose)
  return () => { proxy.off('close', onClose) }
}
