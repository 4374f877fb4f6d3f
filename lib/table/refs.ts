import { ConfigError } from '../errors.js'
import type { ObjectKind } from '../model/types.js'

/** Names one object of the table: what a delete or a store key points at. */
export interface ObjectRef {
  kind: ObjectKind
  namespace: string
  name: string
}

const KINDS: Record<string, ObjectKind> = {
  service: 'Service', services: 'Service', svc: 'Service',
  endpoints: 'Endpoints', ep: 'Endpoints',
  endpointslice: 'EndpointSlice', endpointslices: 'EndpointSlice',
  pod: 'Pod', pods: 'Pod', po: 'Pod',
}

/** `Service ns/name`, `service/ns/name`, `svc ns/name` (kubectl-ish) → ObjectRef. */
export function parseRef (text: string): ObjectRef {
  const m = /^([A-Za-z]+)[ /]+(?:([a-z0-9.-]+)\/)?([a-z0-9.-]+)$/.exec(text.trim())
  const kind = m === null ? undefined : KINDS[(m[1] ?? '').toLowerCase()]
  if (m === null || kind === undefined) {
    throw new ConfigError(`expected "service|endpoints|endpointslice|pod NAMESPACE/NAME", got "${text}"`)
  }
  return { kind, namespace: m[2] ?? 'default', name: m[3] ?? '' }
}
