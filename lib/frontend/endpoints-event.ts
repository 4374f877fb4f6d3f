import type { EventEmitter } from 'node:events'
import { type EndpointsChangedEvent, observed } from './events.js'
import type { ServicePortRuntime } from './runtime.js'

/**
 * Emits 'endpoints' for a service port whose serving set changed: the data plane after a sync
 * (ServicePortRuntime.servingChanged) and when a port goes (`removed`: an empty set); endpoint
 * health may call it when it takes one out of rotation or back. Builds nothing unless observed.
 */
export function emitEndpointsChanged (events: EventEmitter, rt: ServicePortRuntime, removed = false): void {
  if (!observed(events, 'endpoints')) return
  const e: EndpointsChangedEvent = {
    service: `${rt.namespace}/${rt.service}`,
    port: rt.portLabel,
    protocol: rt.state.port.protocol,
    // The balancer's set is what takes new connections (endpoint health keeps ejected ones out of it).
    endpoints: removed ? [] : rt.balancer.endpoints.map((b) => b.key),
  }
  events.emit('endpoints', e)
}

