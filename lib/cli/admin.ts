import type { Logger } from 'pino'
import { type AdminServer, createAdminServer } from '../admin/server.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import type { SourceHealth } from '../sources/health.js'
import { DEFAULTS } from '../defaults.js'
import { formatDuration, parseDuration } from '../util/duration.js'
import { type FlagValues, str } from './flags.js'

/**
 * Starts the admin servers of `run`/`demo` from their flags and says where they listen, one
 * stderr line each (with port 0 the line is the only way to learn the port).
 */
export async function startAdminFromFlags (values: FlagValues, proxy: ServiceProxy, logger: Logger, health: (() => SourceHealth) | undefined, err: (line: string) => void): Promise<AdminServer> {
  const admin = await createAdminServer({
    proxy,
    health,
    logger,
    healthzBindAddress: str(values, 'healthz-bind-address') ?? '',
    metricsBindAddress: str(values, 'metrics-bind-address') ?? '',
    accessLog: values['access-log'] === true,
    maxLoopDelayMs: parseDuration(str(values, 'healthz-max-loop-delay') ?? formatDuration(DEFAULTS.healthzMaxLoopDelayMs), '--healthz-max-loop-delay'),
  })
  if (admin.healthzUrl !== null) err(`svcproxy: healthz on ${admin.healthzUrl}/healthz`)
  if (admin.metricsUrl !== null) err(`svcproxy: metrics on ${admin.metricsUrl}/metrics`)
  return admin
}
