import type { Logger } from 'pino'
import { type AdminServer, createAdminServer } from '../admin/server.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import type { SourceHealth } from '../sources/health.js'
import { DEFAULTS } from '../defaults.js'
import { ConfigError } from '../errors.js'
import { checkToxiproxyAddress, startToxiproxyApi } from '../toxiproxy/server.js'
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
  // --toxiproxy-address: started with the admin servers, closed with them.
  const tpAddress = str(values, 'toxiproxy-address') ?? ''
  if (tpAddress === '') return admin
  const tp = await startToxiproxyApi(proxy, { address: tpAddress, allowRemote: values['toxiproxy-allow-remote'] === true, logger }).catch(async (e: unknown) => {
    await admin.close()
    throw e
  })
  err(`svcproxy: toxiproxy API on ${tp.url}`)
  return {
    healthzUrl: admin.healthzUrl,
    metricsUrl: admin.metricsUrl,
    shuttingDown: () => { admin.shuttingDown() },
    close: async () => { await Promise.all([tp.close(), admin.close()]) },
  }
}

/** --toxiproxy-address and --toxiproxy-allow-remote as usage errors, before anything starts. */
export function checkToxiproxyFlags (values: FlagValues): void {
  const address = str(values, 'toxiproxy-address') ?? ''
  if (address !== '') checkToxiproxyAddress(address, values['toxiproxy-allow-remote'] === true)
  else if (values['toxiproxy-allow-remote'] === true) throw new ConfigError('--toxiproxy-allow-remote: needs --toxiproxy-address')
}
