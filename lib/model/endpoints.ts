import { isIP, refusedAddress } from './ip.js'
import { readMeta } from './metadata.js'
import { DNS1123_LABEL_HINT, isDNS1123Label } from './names.js'
import { type Ctx, type Raw, at, child, describe, field, isRecord } from './reader.js'
import type { EndpointAddress, EndpointPort, EndpointSubset, Endpoints } from './types.js'

export function parseEndpoints (ctx: Ctx, raw: Raw): Endpoints | undefined {
  const meta = readMeta(ctx, raw, 'subdomain')
  const subsets: EndpointSubset[] = []
  const rawSubsets = ctx.list(raw, 'subsets', '')
  for (let i = 0; i < rawSubsets.length; i++) {
    const s = rawSubsets[i]
    const path = at('subsets', i)
    if (!isRecord(s)) {
      ctx.issue(path, `expected an object, got ${describe(s)}`)
      continue
    }
    subsets.push({
      addresses: readAddresses(ctx, ctx.list(s, 'addresses', path), `${path}.addresses`),
      notReadyAddresses: readAddresses(ctx, ctx.list(s, 'notReadyAddresses', path), `${path}.notReadyAddresses`),
      ports: readEndpointPorts(ctx, ctx.list(s, 'ports', path), `${path}.ports`, 'endpoints')
    })
  }
  return { kind: 'Endpoints', namespace: meta.namespace, name: meta.name, subsets }
}

function readAddresses (ctx: Ctx, list: unknown[], path: string): EndpointAddress[] {
  const out: EndpointAddress[] = []
  for (let i = 0; i < list.length; i++) {
    const a = list[i]
    if (!isRecord(a)) {
      ctx.issue(at(path, i), `expected an object, got ${describe(a)}`)
      continue
    }
    // The address's path is built only where an issue needs it: this runs for every endpoint.
    const ip = field(a, 'ip')
    const nn = field(a, 'nodeName')
    let nodeName = ''
    if (typeof nn === 'string') nodeName = nn
    else if (nn !== undefined) ctx.issue(child(at(path, i), 'nodeName'), `expected a string, got ${describe(nn)}`)
    const podName = field(a, 'targetRef') === undefined ? '' : readPodRef(ctx, a, at(path, i))
    if (typeof ip !== 'string' || !isIP(ip)) {
      ctx.issue(`${at(path, i)}.ip`, `expected an IPv4 or IPv6 address, got ${describe(ip)}`)
      continue
    }
    const why = refusedAddress(ip, 'endpoint')
    if (why === '') out.push({ ip, nodeName, podName })
    else ctx.issue(`${at(path, i)}.ip`, why)
  }
  return out
}

/** targetRef.name when it refers to a Pod; '' otherwise. */
export function readPodRef (ctx: Ctx, o: Raw, path: string): string {
  const ref = ctx.obj(o, 'targetRef', path)
  if (ref === undefined) return ''
  const kind = ctx.str(ref, 'kind', `${path}.targetRef`)
  const name = ctx.str(ref, 'name', `${path}.targetRef`)
  return kind === 'Pod' && name !== undefined ? name : ''
}

/**
 * Ports of an Endpoints subset or an EndpointSlice. Endpoints require names once
 * there are several ports (like Services); slices may omit `port`, meaning "all
 * ports", which a userspace proxy cannot use, so such entries are dropped.
 */
export function readEndpointPorts (ctx: Ctx, list: unknown[], path: string, style: 'endpoints' | 'slice'): EndpointPort[] {
  const out: EndpointPort[] = []
  // With one port there is nothing to compare: no Set per object.
  const names = list.length > 1 ? new Set<string>() : null
  for (let i = 0; i < list.length; i++) {
    const rp = list[i]
    const p = at(path, i)
    if (!isRecord(rp)) {
      ctx.issue(p, `expected a port object, got ${describe(rp)}`)
      continue
    }
    const name = ctx.str(rp, 'name', p) ?? ''
    if (name === '') {
      if (style === 'endpoints' && list.length > 1) ctx.issue(`${p}.name`, 'expected a port name: every port needs one when there is more than one port')
    } else if (!isDNS1123Label(name)) {
      ctx.issue(`${p}.name`, `expected a DNS-1123 label (${DNS1123_LABEL_HINT}), got ${describe(name)}`)
    } else if (names?.has(name) === true) {
      ctx.issue(`${p}.name`, `expected a unique port name, got ${describe(name)} a second time`)
    }
    names?.add(name)
    const protocol = ctx.protocol(rp, 'protocol', p)
    if (style === 'slice' && field(rp, 'port') === undefined) continue
    const port = ctx.port(rp, 'port', p)
    if (port !== undefined && protocol !== undefined) out.push({ name, port, protocol })
  }
  return out
}
