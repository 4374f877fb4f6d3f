/**
 * Every annotation svcproxy reads, in one place: the model validates them, the data plane reads
 * them. Issues adding per-service settings add theirs here (and to docs/services.md).
 */

/** Per service: `round-robin`, `random`, `least-connections`, `p2c` or `hash` (balancer/balancer.ts ALGORITHMS); anything else falls back to --load-balancer. */
export const LOAD_BALANCER_ANNOTATION = 'svcproxy.io/load-balancer'
/** Per service: the most TCP connections its ports hold open together ("0": no limit). */
export const MAX_CONNECTIONS_ANNOTATION = 'svcproxy.io/max-connections'
/** The cloud providers' spelling of loadBalancerSourceRanges, used when the field is empty. */
export const SOURCE_RANGES_ANNOTATION = 'service.beta.kubernetes.io/load-balancer-source-ranges'

/** Highest value --max-connections and the max-connections annotation take. */
export const MAX_CONNECTIONS_LIMIT = 10_000_000

/** The max-connections annotation's value as a limit: 0 (none) when absent or malformed (the model refuses those). */
export function maxConnectionsOf (annotations: Record<string, string>): number {
  const v = annotations[MAX_CONNECTIONS_ANNOTATION]
  if (v === undefined || !validMaxConnections(v)) return 0
  return Number(v)
}

export function validMaxConnections (v: string): boolean {
  return /^\d{1,8}$/.test(v) && Number(v) <= MAX_CONNECTIONS_LIMIT
}

/** Per service, outlier ejection (lib/model/endpoint-health.ts parses them; docs/health.md): dial failures in a row that eject an endpoint, or "off". */
export const OUTLIER_FAILURES_ANNOTATION = 'svcproxy.io/outlier-consecutive-failures'
export const OUTLIER_BASE_EJECTION_ANNOTATION = 'svcproxy.io/outlier-base-ejection-time'
export const OUTLIER_MAX_EJECTION_ANNOTATION = 'svcproxy.io/outlier-max-ejection-time'
export const OUTLIER_MAX_PERCENT_ANNOTATION = 'svcproxy.io/outlier-max-ejection-percent'
/** Per service, active health checks: `tcp` or `http:/path` (off when absent), and their timing. */
export const HEALTH_CHECK_ANNOTATION = 'svcproxy.io/health-check'
export const HEALTH_CHECK_INTERVAL_ANNOTATION = 'svcproxy.io/health-check-interval'
export const HEALTH_CHECK_TIMEOUT_ANNOTATION = 'svcproxy.io/health-check-timeout'
export const HEALTH_CHECK_RISE_ANNOTATION = 'svcproxy.io/health-check-rise'
export const HEALTH_CHECK_FALL_ANNOTATION = 'svcproxy.io/health-check-fall'

/** Per service: `v1`, `v2` or `none`: the PROXY protocol header sent to its endpoints before any byte (docs/proxy-protocol.md); absent: --proxy-protocol. */
export const PROXY_PROTOCOL_ANNOTATION = 'svcproxy.io/proxy-protocol'
export type ProxyProtocolMode = 'none' | 'v1' | 'v2'
export const PROXY_PROTOCOL_MODES: readonly ProxyProtocolMode[] = ['none', 'v1', 'v2']

/** The proxy-protocol annotation's mode: null (the daemon's default) when absent or malformed (the model refuses those). */
export function proxyProtocolOf (annotations: Record<string, string>): ProxyProtocolMode | null {
  const v = annotations[PROXY_PROTOCOL_ANNOTATION]
  return v === 'none' || v === 'v1' || v === 'v2' ? v : null
}

/**
 * What is wrong with a service's proxy-protocol annotation, '' when nothing: a value other than
 * v1, v2 or none, or v1 on a service with a UDP port (v1 is a text line for TCP; UDP has v2 only).
 */
export function proxyProtocolIssue (annotations: Record<string, string>, protocols: readonly string[]): string {
  const v = annotations[PROXY_PROTOCOL_ANNOTATION]
  if (v === undefined || v === 'none' || v === 'v2') return ''
  if (v === 'v1') return protocols.includes('UDP') ? 'v2 or none on a service with a UDP port (v1 has no UDP form; v2 has, one header per datagram)' : ''
  return `one of ${PROXY_PROTOCOL_MODES.join(', ')}`
}
