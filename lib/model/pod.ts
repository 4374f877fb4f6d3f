import { isIP } from './ip.js'
import { readMeta } from './metadata.js'
import { IANA_SVC_NAME_HINT, isIANASvcName } from './names.js'
import { type Ctx, type Raw, at, describe, field, isRecord } from './reader.js'
import type { ContainerPort, Pod } from './types.js'

export function parsePod (ctx: Ctx, raw: Raw): Pod | undefined {
  const meta = readMeta(ctx, raw, 'subdomain')
  const spec = ctx.obj(raw, 'spec', '') ?? {}
  const status = ctx.obj(raw, 'status', '') ?? {}

  let podIP = ctx.str(status, 'podIP', 'status') ?? ''
  if (podIP === '') {
    const ips = ctx.list(status, 'podIPs', 'status')
    const first = ips[0]
    if (isRecord(first)) podIP = ctx.str(first, 'ip', 'status.podIPs[0]') ?? ''
    if (podIP !== '' && !isIP(podIP)) {
      ctx.issue('status.podIPs[0].ip', `expected an IPv4 or IPv6 address, got ${describe(podIP)}`)
      podIP = ''
    }
  } else if (!isIP(podIP)) {
    ctx.issue('status.podIP', `expected an IPv4 or IPv6 address, got ${describe(podIP)}`)
    podIP = ''
  }

  let ready = false
  const conditions = ctx.list(status, 'conditions', 'status')
  for (const c of conditions) {
    if (isRecord(c) && field(c, 'type') === 'Ready') ready = field(c, 'status') === 'True'
  }

  return {
    kind: 'Pod',
    namespace: meta.namespace,
    name: meta.name,
    labels: meta.labels,
    podIP,
    phase: ctx.str(status, 'phase', 'status') ?? '',
    ready,
    terminating: meta.deleting,
    nodeName: ctx.str(spec, 'nodeName', 'spec') ?? '',
    ports: readContainerPorts(ctx, spec)
  }
}

function readContainerPorts (ctx: Ctx, spec: Raw): ContainerPort[] {
  const out: ContainerPort[] = []
  const containers = ctx.list(spec, 'containers', 'spec')
  for (let i = 0; i < containers.length; i++) {
    const c = containers[i]
    const cpath = at('spec.containers', i)
    if (!isRecord(c)) {
      ctx.issue(cpath, `expected an object, got ${describe(c)}`)
      continue
    }
    const ports = ctx.list(c, 'ports', cpath)
    for (let j = 0; j < ports.length; j++) {
      const p = ports[j]
      const path = at(`${cpath}.ports`, j)
      if (!isRecord(p)) {
        ctx.issue(path, `expected a port object, got ${describe(p)}`)
        continue
      }
      const name = ctx.str(p, 'name', path) ?? ''
      if (name !== '' && !isIANASvcName(name)) {
        ctx.issue(`${path}.name`, `expected a port name (${IANA_SVC_NAME_HINT}), got ${describe(name)}`)
      }
      const containerPort = ctx.port(p, 'containerPort', path)
      // An SCTP container port is valid Kubernetes and no TCP/UDP service can
      // target it, so it is dropped rather than failing the whole pod list.
      const proto = field(p, 'protocol')
      if (proto === 'SCTP') continue
      const protocol = ctx.protocol(p, 'protocol', path)
      if (containerPort !== undefined && protocol !== undefined) out.push({ name, containerPort, protocol })
    }
  }
  return out
}
