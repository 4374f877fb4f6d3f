import fastJson from 'fast-json-stringify'
import type { EndpointStatus, ServicePortStatus } from '../api/service-proxy.js'
import type { HealthzBody } from './health.js'

// Schemas are compiled once, at module load: a serializer is a generated function that
// writes exactly the listed fields, no reflection per request.

/** Schema pieces shared with /v1/stats (stats-serialize.ts). */
export const str = { type: 'string' } as const
export const int = { type: 'integer' } as const
export const bool = { type: 'boolean' } as const

export const frontend = {
  type: 'object',
  properties: { kind: str, protocol: str, address: str, port: int, boundPort: int, state: str, error: str },
  required: ['kind', 'protocol', 'address', 'port', 'boundPort', 'state', 'error'],
} as const

const endpoint = {
  type: 'object',
  properties: {
    endpoint: str, nodeName: str, ready: bool, active: int, accepted: int, dialFailures: int, bytesUp: int, bytesDown: int,
    eligible: bool, ejected: bool, ejectedUntil: int, ejections: int, consecutiveFailures: int, check: str,
  },
  required: ['endpoint', 'nodeName', 'ready', 'active', 'accepted', 'dialFailures', 'bytesUp', 'bytesDown', 'eligible', 'ejected', 'ejectedUntil', 'ejections', 'consecutiveFailures', 'check'],
} as const

/** A toxic on the port (proxy.faults): attributes as given, per type. */
export const toxic = {
  type: 'object',
  properties: {
    name: str, type: str, stream: str, toxicity: { type: 'number' },
    attributes: { type: 'object', additionalProperties: true },
    scope: { type: 'object', properties: { service: str, port: str, endpoint: str } },
    applied: int, bytes: int, datagrams: int,
  },
} as const

const servicePort = {
  type: 'object',
  properties: {
    id: str, namespace: str, name: str, port: str, protocol: str, clusterIP: str, type: str, algorithm: str, sessionAffinity: str, proxyProtocol: str,
    frontends: { type: 'array', items: frontend },
    endpoints: { type: 'array', items: endpoint },
    active: int, accepted: int, dialFailures: int, bytesUp: int, bytesDown: int,
    faults: { type: 'array', items: toxic },
  },
  required: ['id', 'namespace', 'name', 'port', 'protocol', 'clusterIP', 'type', 'frontends', 'endpoints', 'active', 'accepted'],
} as const

export interface ServicesDoc {
  revision: number
  services: ServicePortStatus[]
}

export interface EndpointRow extends EndpointStatus {
  namespace: string
  service: string
  port: string
  protocol: 'TCP' | 'UDP'
  affinityHits: number
  udpDatagramsUp: number
  udpDatagramsDown: number
}

export interface EndpointsDoc {
  revision: number
  endpoints: EndpointRow[]
}

const servicesFn = fastJson({
  type: 'object',
  properties: { revision: int, services: { type: 'array', items: servicePort } },
  required: ['revision', 'services'],
})

const endpointsFn = fastJson({
  type: 'object',
  properties: {
    revision: int,
    endpoints: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          namespace: str, service: str, port: str, protocol: str,
          ...endpoint.properties,
          affinityHits: int, udpDatagramsUp: int, udpDatagramsDown: int,
        },
        required: ['namespace', 'service', 'port', 'protocol', ...endpoint.required],
      },
    },
  },
  required: ['revision', 'endpoints'],
})

const healthzFn = fastJson({
  type: 'object',
  properties: { lastUpdated: str, currentTime: str },
  required: ['lastUpdated', 'currentTime'],
})

export const serializeServices: (doc: ServicesDoc) => string = servicesFn
export const serializeEndpoints: (doc: EndpointsDoc) => string = endpointsFn
export const serializeHealthz: (doc: HealthzBody) => string = healthzFn
