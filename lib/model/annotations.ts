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
