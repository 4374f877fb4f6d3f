/**
 * What a source (config file, Redis) reports about its freshness. Health endpoints read it:
 * /readyz is 503 until `synced`, /healthz is 503 while `stale`.
 */
export interface SourceHealth {
  /** Which source: 'file', 'redis', 'api'. */
  kind: string
  /** The first full load (list) has been applied. */
  synced: boolean
  /** The served state may be out of date (store unreachable, store came back empty, ...). */
  stale: boolean
  /** Why it is stale, '' when fresh. */
  reason: string
  /** Last time the source confirmed the served state (ms since epoch), 0 before the first sync. */
  lastSyncedAt: number
  /** Source revision last applied (file: a counter; Redis: the store revision). */
  revision: number
  /** Requests to the source left unanswered past their deadline since start (Redis: store commands). */
  timeouts?: number
}

/** The library-API "source": whatever the caller applies is, by definition, current. */
export function apiHealth (revision: number, lastSyncedAt: number): SourceHealth {
  return { kind: 'api', synced: true, stale: false, reason: '', lastSyncedAt, revision }
}
