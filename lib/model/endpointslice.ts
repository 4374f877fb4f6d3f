import { readPodRef, readEndpointPorts } from './endpoints.js'
import { isIPv4, isIPv6, refusedAddress } from './ip.js'
import { readMeta } from './metadata.js'
import { DNS1123_SUBDOMAIN_HINT, isDNS1123Subdomain } from './names.js'
import { type Ctx, type Raw, at, describe, field, isRecord } from './reader.js'
import type { EndpointSlice, SliceEndpoint } from './types.js'

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name'
const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const
type AddressType = typeof ADDRESS_TYPES[number]

const ADDRESS_CHECK: Record<AddressType, { test: (s: string) => boolean, expected: string }> = {
  IPv4: { test: isIPv4, expected: 'an IPv4 address' },
  IPv6: { test: isIPv6, expected: 'an IPv6 address' },
  FQDN: { test: isDNS1123Subdomain, expected: `a DNS name (${DNS1123_SUBDOMAIN_HINT})` }
}

export function parseEndpointSlice (ctx: Ctx, raw: Raw): EndpointSlice | undefined {
  const meta = readMeta(ctx, raw, 'subdomain')
  const serviceName = Object.hasOwn(meta.labels, SERVICE_NAME_LABEL) ? meta.labels[SERVICE_NAME_LABEL] ?? '' : ''
  if (serviceName === '') {
    ctx.issue(`metadata.labels[${JSON.stringify(SERVICE_NAME_LABEL)}]`, 'expected the name of the Service this slice belongs to, got nothing')
  }

  const at0 = field(raw, 'addressType')
  let addressType: AddressType | undefined
  if (typeof at0 === 'string' && (ADDRESS_TYPES as readonly string[]).includes(at0)) addressType = at0 as AddressType
  else ctx.issue('addressType', `expected one of ${ADDRESS_TYPES.join(', ')}, got ${describe(at0)}`)

  // v1beta1 slices carried the node in topology; v1 moved it to nodeName.
  const beta = field(raw, 'apiVersion') === 'discovery.k8s.io/v1beta1'
  const endpoints: SliceEndpoint[] = []
  const rawEndpoints = ctx.list(raw, 'endpoints', '')
  for (let i = 0; i < rawEndpoints.length; i++) {
    const e = rawEndpoints[i]
    const path = at('endpoints', i)
    if (!isRecord(e)) {
      ctx.issue(path, `expected an object, got ${describe(e)}`)
      continue
    }
    const addresses: string[] = []
    const rawAddrs = ctx.list(e, 'addresses', path)
    if (rawAddrs.length === 0) ctx.issue(`${path}.addresses`, 'expected at least one address, got none')
    for (let j = 0; j < rawAddrs.length; j++) {
      const a = rawAddrs[j]
      const check = addressType === undefined ? undefined : ADDRESS_CHECK[addressType]
      if (typeof a !== 'string' || (check !== undefined && !check.test(a))) {
        ctx.issue(at(`${path}.addresses`, j), `expected ${check?.expected ?? 'an address'}, got ${describe(a)}`)
        continue
      }
      const why = addressType === 'FQDN' ? '' : refusedAddress(a, 'endpoint')
      if (why === '') addresses.push(a)
      else ctx.issue(at(`${path}.addresses`, j), why)
    }
    const cond = ctx.obj(e, 'conditions', path) ?? {}
    const ready = ctx.bool(cond, 'ready', `${path}.conditions`, true)
    const serving = ctx.bool(cond, 'serving', `${path}.conditions`, ready)
    const terminating = ctx.bool(cond, 'terminating', `${path}.conditions`, false)
    let nodeName = ctx.str(e, 'nodeName', path) ?? ''
    if (nodeName === '' && beta) {
      const topology = ctx.stringMap(e, 'topology', path)
      nodeName = Object.hasOwn(topology, 'kubernetes.io/hostname') ? topology['kubernetes.io/hostname'] ?? '' : ''
    }
    endpoints.push({ addresses, conditions: { ready, serving, terminating }, nodeName, podName: readPodRef(ctx, e, path) })
  }

  const ports = readEndpointPorts(ctx, ctx.list(raw, 'ports', ''), 'ports', 'slice')
  return {
    kind: 'EndpointSlice',
    namespace: meta.namespace,
    name: meta.name,
    serviceName,
    addressType: addressType ?? 'IPv4',
    endpoints,
    ports
  }
}
