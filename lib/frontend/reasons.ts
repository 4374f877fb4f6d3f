// Stable strings that leave the process: access logs, events, log fields and tests match on them.
// docs/operations.md (close reasons) and docs/udp.md (drop reasons) list each one;
// test/registries.test.ts fails when a list and its page disagree.

/** Why a TCP connection or a UDP session ended (`CloseEvent.reason`, the access log's `reason`). */
export const CLOSE_REASONS = [
  { reason: 'eof', meaning: 'both sides finished cleanly (half-close propagated)' },
  { reason: 'client-error', meaning: 'the client reset or errored' },
  { reason: 'backend-error', meaning: 'the endpoint reset or errored after connecting' },
  { reason: 'dial-failed', meaning: 'every dial attempt failed' },
  { reason: 'no-endpoints', meaning: 'the service port had no (eligible) endpoint' },
  { reason: 'idle-timeout', meaning: 'no bytes either way for --tcp-idle-timeout (TCP) or --udp-timeout (UDP)' },
  { reason: 'shutdown', meaning: 'cut after --shutdown-grace, or close()' },
  { reason: 'removed', meaning: 'the endpoint or the service went away' },
  { reason: 'fault', meaning: 'a fault (toxic) ended it: timeout, reset_peer or limit_data (proxy.faults)' },
] as const

export type CloseReason = typeof CLOSE_REASONS[number]['reason']

/** Why UDP datagrams were dropped (counted in svcproxy_udp_drops_total; the drop log line's `reason`). */
export const DROP_REASONS = [
  { reason: 'sessions-full', meaning: 'a new client while the service port is at --udp-max-sessions' },
  { reason: 'no-endpoints', meaning: 'the service port has no (eligible) endpoint' },
  { reason: 'queue-full', meaning: 'the connect queue of a session is full' },
  { reason: 'send-queue-full', meaning: 'more than 4 MiB of replies already wait in the service socket\'s send queue' },
  { reason: 'session-ended', meaning: 'queued datagrams of a session that ended before its socket connected, or datagrams a fault (latency, reorder) still held when it ended' },
  { reason: 'endpoint-refused', meaning: 'a datagram the endpoint refused (ICMP port or host unreachable), one per refusal the kernel reports; the session moves to another endpoint' },
  { reason: 'source-range', meaning: 'a client outside the service\'s loadBalancerSourceRanges, at a load-balancer address' },
  { reason: 'fault-queue-full', meaning: 'a latency fault already holds 1,024 datagrams or 2 MiB for this session and direction' },
] as const

export type DropReason = typeof DROP_REASONS[number]['reason']
