/**
 * Every default in one place: the library (createProxy, watchRedis, the admin server), the CLI's
 * flags (lib/cli/flags.ts prints these) and docs/cli.md all read them from here; a test holds the
 * flag table to it. Durations are milliseconds.
 */
export const DEFAULTS = {
  /** --service-cluster-ip-range: loopback, so it works without privileges. */
  serviceClusterIPRange: '127.96.0.0/16',
  /** --service-node-port-range, kube-apiserver's. */
  serviceNodePortRange: '30000-32767',
  /** --load-balancer. */
  loadBalancer: 'round-robin',
  /** --proxy-protocol: no PROXY protocol header unless a service's annotation asks for one. */
  proxyProtocol: 'none',
  /** --engine. */
  engine: 'uv',
  /** --bind-address: where NodePorts listen without --nodeport-addresses. */
  bindAddress: '0.0.0.0',
  /** --udp-timeout (kube-proxy's userspace mode used 250ms, the complaint this fixes: docs/udp.md). */
  udpTimeoutMs: 30_000,
  /** --udp-max-sessions, per service port. */
  udpMaxSessions: 10_000,
  /** --max-connections: 0 = no limit. */
  maxConnections: 0,
  /** --tcp-idle-timeout: 0 = never, as kube-proxy. */
  tcpIdleTimeoutMs: 0,
  /** --shutdown-grace. */
  shutdownGraceMs: 30_000,
  /** --log-level. */
  logLevel: 'info',
  /** --healthz-bind-address, kube-proxy's. */
  healthzBindAddress: '127.0.0.1:10256',
  /** --metrics-bind-address, kube-proxy's. */
  metricsBindAddress: '127.0.0.1:10249',
  /** --toxiproxy-address: '' = off (the API is opt-in; Toxiproxy's own is 127.0.0.1:8474). */
  toxiproxyAddress: '',
  /** --redis-key-prefix: a {hash tag}, so a Redis Cluster keeps every key in one slot. */
  redisKeyPrefix: '{svcproxy}:',
  /** --sync-period. */
  syncPeriodMs: 30_000,
  /** --healthz-max-loop-delay: /healthz answers 503 while the event loop is blocked longer; 0 = off. */
  healthzMaxLoopDelayMs: 2_000,
  /** createProxy({ strictBind }), library only: a write whose listeners cannot bind resolves (false) or rejects with BindError (true). */
  strictBind: false,
  /** createProxy({ seed }), library only: null = Math.random; an integer makes every random choice reproducible. */
  seed: null,
  /** proxy.waitFor() without { timeout }, library only. */
  waitForTimeoutMs: 10_000,
  /** proxy.events() without { bufferSize }, library only: events held for a slow consumer before it fails loudly. */
  eventsBufferSize: 10_000,
  /** --outlier-consecutive-failures: dial failures in a row that eject an endpoint (Envoy's default); 0 = outlier ejection off. */
  outlierConsecutiveFailures: 5,
  /** --outlier-base-ejection-time: ejection time = this × times ejected (Envoy's base_ejection_time). */
  outlierBaseEjectionTimeMs: 30_000,
  /** --outlier-max-ejection-time: the longest ejection (Envoy's max_ejection_time). */
  outlierMaxEjectionTimeMs: 300_000,
  /** --outlier-max-ejection-percent: most of a port's endpoints ejected at once (at least one may be, never all). */
  outlierMaxEjectionPercent: 50,
  /** demo --port. */
  demoPort: 8080,
} as const
