import fastJson from 'fast-json-stringify'
import { bool, frontend, int, str, toxic } from './serialize.js'
import type { StatsDoc } from './stats.js'

// The /v1/stats schema, compiled once at module load as serialize.ts does for /v1/services:
// exactly these fields are written. docs/operations.md documents each of them.

const num = { type: 'number' } as const

const rates = { connPerSec: num, bytesUpPerSec: num, bytesDownPerSec: num } as const
const rateNames = ['connPerSec', 'bytesUpPerSec', 'bytesDownPerSec'] as const

const endpoint = {
  type: 'object',
  properties: {
    endpoint: str, nodeName: str, podName: str, ready: bool, state: str,
    active: int, accepted: int, dialFailures: int, bytesUp: int, bytesDown: int,
    eligible: bool, ejected: bool, ejectedUntil: int, ejections: int, consecutiveFailures: int, check: str,
    affinityHits: int, udpDatagramsUp: int, udpDatagramsDown: int, ...rates,
  },
  required: ['endpoint', 'nodeName', 'podName', 'ready', 'state', 'active', 'accepted', 'dialFailures', 'bytesUp', 'bytesDown', 'eligible', 'ejected', 'ejectedUntil', 'ejections', 'consecutiveFailures', 'check', 'affinityHits', 'udpDatagramsUp', 'udpDatagramsDown', ...rateNames],
} as const

const servicePort = {
  type: 'object',
  properties: {
    id: str, namespace: str, name: str, port: str, protocol: str, clusterIP: str, type: str, algorithm: str, sessionAffinity: str, proxyProtocol: str,
    state: str,
    faults: { type: 'array', items: toxic },
    frontends: { type: 'array', items: frontend },
    endpoints: { type: 'array', items: endpoint },
    active: int, udpSessions: int, accepted: int, dialFailures: int, dialRetries: int,
    rejected: int, noEndpoints: int, sourceRangeDenied: int, udpDrops: int,
    bytesUp: int, bytesDown: int, udpDatagramsUp: int, udpDatagramsDown: int,
    endpointsChangedAt: int, ...rates,
  },
  required: [
    'id', 'namespace', 'name', 'port', 'protocol', 'clusterIP', 'type', 'algorithm', 'sessionAffinity', 'state', 'frontends', 'endpoints',
    'active', 'udpSessions', 'accepted', 'dialFailures', 'dialRetries', 'rejected', 'noEndpoints', 'sourceRangeDenied', 'udpDrops',
    'bytesUp', 'bytesDown', 'udpDatagramsUp', 'udpDatagramsDown', 'endpointsChangedAt', ...rateNames,
  ],
} as const

const statsFn = fastJson({
  type: 'object',
  properties: {
    time: int,
    revision: int,
    windowMs: int,
    source: {
      type: 'object',
      properties: { kind: str, synced: bool, stale: bool, reason: str, revision: int, lastSyncedAt: int, lagMs: int, syncErrors: int },
      required: ['kind', 'synced', 'stale', 'reason', 'revision', 'lastSyncedAt', 'lagMs', 'syncErrors'],
    },
    totals: {
      type: 'object',
      properties: { servicePorts: int, active: int, dialFailures: int, rejected: int, ...rates },
      required: ['servicePorts', 'active', 'dialFailures', 'rejected', ...rateNames],
    },
    services: { type: 'array', items: servicePort },
  },
  required: ['time', 'revision', 'windowMs', 'source', 'totals', 'services'],
})

export const serializeStats: (doc: StatsDoc) => string = statsFn
