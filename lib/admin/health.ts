import type { SourceHealth } from '../sources/health.js'

/** Go's zero time as kube-proxy prints it for "never updated". */
const ZERO_TIME = '0001-01-01T00:00:00Z'

export interface HealthzBody {
  lastUpdated: string
  currentTime: string
}

export interface Answer<B> {
  status: 200 | 503
  body: B
}

function rfc3339 (ms: number): string {
  return ms > 0 ? new Date(ms).toISOString() : ZERO_TIME
}

/**
 * kube-proxy's /healthz: 200 with `lastUpdated`/`currentTime` while the served table is fresh,
 * 503 (same body) once the source says it may be out of date. As in kube-proxy, a proxy still
 * starting up is healthy: "not yet synced" is /readyz's business.
 */
export function healthz (h: SourceHealth, now = Date.now()): Answer<HealthzBody> {
  return { status: h.stale ? 503 : 200, body: { lastUpdated: rfc3339(h.lastSyncedAt), currentTime: rfc3339(now) } }
}

/** /readyz: 503 until the source's first full sync, and again once shutdown has begun. */
export function readyz (h: SourceHealth, shuttingDown: boolean): Answer<string> {
  if (shuttingDown) return { status: 503, body: 'not ready: shutting down\n' }
  if (!h.synced) return { status: 503, body: `not ready: ${h.kind} source not synced yet\n` }
  return { status: 200, body: 'ok\n' }
}
