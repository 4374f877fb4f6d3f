/**
 * One endpoint (ip:port) of a service port, plus its live counters.
 * The data plane keeps a Backend object for as long as the endpoint stays in the set,
 * so its counters survive table updates; counting is a field increment, nothing more.
 */
import { type Endpoint, endpointKey } from '../table/endpoints.js'

export class Backend implements Endpoint {
  readonly key: string
  readonly ip: string
  readonly port: number
  nodeName: string
  podName: string
  /** false for a serving-and-terminating fallback endpoint. */
  ready: boolean

  accepted = 0
  active = 0
  dialFailures = 0
  bytesUp = 0
  bytesDown = 0
  affinityHits = 0
  udpDatagramsUp = 0
  udpDatagramsDown = 0

  /** Endpoint health (frontend/endpoint-health.ts): dial failures since the last success; a success sets 0. */
  consecutiveFailures = 0
  /** Outlier ejection: takes no new connection until `ejectedUntil` (ms since epoch). */
  ejected = false
  ejectedUntil = 0
  /** Ejection multiplier (times ejected, decaying while healthy), when it last returned, and ejections in all. */
  ejections = 0
  returnedAt = 0
  ejectionsTotal = 0
  /** Active health check: 'none' (the service asks for none), 'pending' (not checked yet), 'up', 'down'. */
  check: 'none' | 'pending' | 'up' | 'down' = 'none'

  /** `key`: the endpoint's own (endpointKey(ip, port)), shared rather than built again: 100,000 strings less at 100,000 endpoints. */
  constructor (ip: string, port: number, nodeName = '', podName = '', ready = true, key = endpointKey(ip, port)) {
    this.ip = ip
    this.port = port
    this.key = key
    this.nodeName = nodeName
    this.podName = podName
    this.ready = ready
  }
}
