import { MAX_CONNECTIONS_ANNOTATION, MAX_CONNECTIONS_LIMIT, PROXY_PROTOCOL_ANNOTATION, proxyProtocolIssue, SOURCE_RANGES_ANNOTATION, validMaxConnections } from './annotations.js'
import { type AddressUse, isCIDR, isIP, refusedAddress } from './ip.js'
import { healthAnnotationIssues } from './endpoint-health.js'
import { readMeta } from './metadata.js'
import { DNS1123_LABEL_HINT, DNS1123_SUBDOMAIN_HINT, IANA_SVC_NAME_HINT, isDNS1123Label, isDNS1123Subdomain, isIANASvcName } from './names.js'
import { type Ctx, type Raw, at, describe, field, isPortNumber, isRecord } from './reader.js'
import type { Service, ServicePort, ServiceType, TrafficPolicy } from './types.js'

const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']
const DEFAULT_AFFINITY_TIMEOUT = 10800
const MAX_AFFINITY_TIMEOUT = 86400

export function parseService (ctx: Ctx, raw: Raw): Service | undefined {
  const meta = readMeta(ctx, raw, 'dns1035')
  const spec = ctx.obj(raw, 'spec', '') ?? {}

  const type = ctx.oneOf(spec, 'type', 'spec', SERVICE_TYPES, 'ClusterIP')
  const clusterIP = readClusterIP(ctx, spec)
  const headless = clusterIP === 'None'
  if (headless && (type === 'NodePort' || type === 'LoadBalancer')) {
    ctx.issue('spec.clusterIP', `a headless service (clusterIP "None") cannot be of type ${type}; expected type ClusterIP`)
  }

  const rawPorts = ctx.list(spec, 'ports', 'spec')
  // Same rule as the API server: only headless and ExternalName services may have no ports.
  if (rawPorts.length === 0 && !headless && type !== 'ExternalName') {
    ctx.issue('spec.ports', `expected at least one port for a ${type} service, got none`)
  }
  const ports = readPorts(ctx, rawPorts, type)

  const selector = ctx.stringMap(spec, 'selector', 'spec')

  const sessionAffinity = ctx.oneOf(spec, 'sessionAffinity', 'spec', ['None', 'ClientIP'] as const, 'None')
  let affinityTimeoutSeconds = DEFAULT_AFFINITY_TIMEOUT
  const sac = ctx.obj(spec, 'sessionAffinityConfig', 'spec')
  const clientIP = sac === undefined ? undefined : ctx.obj(sac, 'clientIP', 'spec.sessionAffinityConfig')
  if (clientIP !== undefined) {
    const t = field(clientIP, 'timeoutSeconds')
    if (typeof t === 'number' && Number.isInteger(t) && t >= 1 && t <= MAX_AFFINITY_TIMEOUT) affinityTimeoutSeconds = t
    else if (t !== undefined) {
      ctx.issue('spec.sessionAffinityConfig.clientIP.timeoutSeconds', `expected an integer 1-${MAX_AFFINITY_TIMEOUT}, got ${describe(t)}`)
    }
  }

  const externalIPs = readIPList(ctx, ctx.list(spec, 'externalIPs', 'spec'), 'spec.externalIPs', 'external')

  const loadBalancerIPs: string[] = []
  const status = ctx.obj(raw, 'status', '')
  const lb = status === undefined ? undefined : ctx.obj(status, 'loadBalancer', 'status')
  if (lb !== undefined) {
    const ingress = ctx.list(lb, 'ingress', 'status.loadBalancer')
    for (let i = 0; i < ingress.length; i++) {
      const entry = ingress[i]
      const path = at('status.loadBalancer.ingress', i)
      if (!isRecord(entry)) {
        ctx.issue(path, `expected an object, got ${describe(entry)}`)
        continue
      }
      // Hostname-only entries (AWS ELBs) carry nothing svcproxy can listen on.
      const ip = ctx.str(entry, 'ip', path)
      if (ip === undefined || ip === '') continue
      if (!isIP(ip)) ctx.issue(`${path}.ip`, `expected an IPv4 or IPv6 address, got ${describe(ip)}`)
      else if (allowed(ctx, `${path}.ip`, ip, 'service')) loadBalancerIPs.push(ip)
    }
  }

  const loadBalancerSourceRanges = readSourceRanges(ctx, spec, meta.annotations, type)
  const externalTrafficPolicy = readTrafficPolicy(ctx, spec, 'externalTrafficPolicy')
  const healthCheckNodePort = readHealthCheckNodePort(ctx, spec, type, externalTrafficPolicy)

  let externalName = ctx.str(spec, 'externalName', 'spec') ?? ''
  if (type === 'ExternalName') {
    if (externalName === '') {
      ctx.issue('spec.externalName', 'expected a DNS name for an ExternalName service, got nothing')
    } else if (!isDNS1123Subdomain(externalName.endsWith('.') ? externalName.slice(0, -1) : externalName)) {
      ctx.issue('spec.externalName', `expected a DNS name (${DNS1123_SUBDOMAIN_HINT}), got ${describe(externalName)}`)
      externalName = ''
    }
  }

  // svcproxy's own annotation with a number in it: refused when malformed, not silently ignored.
  const maxConn = meta.annotations[MAX_CONNECTIONS_ANNOTATION]
  if (maxConn !== undefined && !validMaxConnections(maxConn)) {
    ctx.issue(`metadata.annotations["${MAX_CONNECTIONS_ANNOTATION}"]`, `expected an integer 0-${MAX_CONNECTIONS_LIMIT} (0: no limit), got ${describe(maxConn)}`)
  }
  const ppIssue = proxyProtocolIssue(meta.annotations, ports.map((p) => p.protocol))
  if (ppIssue !== '') ctx.issue(`metadata.annotations["${PROXY_PROTOCOL_ANNOTATION}"]`, `expected ${ppIssue}, got ${describe(meta.annotations[PROXY_PROTOCOL_ANNOTATION])}`)
  for (const [name, expected] of healthAnnotationIssues(meta.annotations)) ctx.issue(`metadata.annotations["${name}"]`, `expected ${expected}, got ${describe(meta.annotations[name])}`)

  const service: Service = {
    kind: 'Service',
    namespace: meta.namespace,
    name: meta.name,
    uid: meta.uid !== '' ? meta.uid : `${meta.namespace}/${meta.name}`,
    type,
    clusterIP,
    ports,
    selector: Object.keys(selector).length === 0 ? null : selector,
    sessionAffinity,
    affinityTimeoutSeconds,
    externalIPs,
    loadBalancerIPs,
    loadBalancerSourceRanges,
    externalName,
    externalTrafficPolicy,
    healthCheckNodePort,
    internalTrafficPolicy: readTrafficPolicy(ctx, spec, 'internalTrafficPolicy'),
    publishNotReadyAddresses: ctx.bool(spec, 'publishNotReadyAddresses', 'spec', false),
    allocateLoadBalancerNodePorts: ctx.bool(spec, 'allocateLoadBalancerNodePorts', 'spec', true),
    annotations: meta.annotations,
    labels: meta.labels
  }
  return service
}

function readClusterIP (ctx: Ctx, spec: Raw): string {
  const valid = (v: string): boolean => v === '' || v === 'None' || isIP(v)
  const ips = ctx.list(spec, 'clusterIPs', 'spec')
  const ip = ctx.str(spec, 'clusterIP', 'spec')
  for (let i = 0; i < ips.length; i++) {
    const v = ips[i]
    if (typeof v !== 'string' || !valid(v)) {
      ctx.issue(at('spec.clusterIPs', i), `expected an IPv4 or IPv6 address or "None", got ${describe(v)}`)
    } else if (v !== ip) {
      allowed(ctx, at('spec.clusterIPs', i), v, 'service') // the address of spec.clusterIP is reported there, once
    }
  }
  const first = ips[0]
  if (ip === undefined) return typeof first === 'string' && valid(first) ? first : ''
  if (!valid(ip)) {
    ctx.issue('spec.clusterIP', `expected an IPv4 or IPv6 address, "None" or "", got ${describe(ip)}`)
    return ''
  }
  allowed(ctx, 'spec.clusterIP', ip, 'service')
  if (typeof first === 'string' && ip !== '' && first !== ip) {
    ctx.issue('spec.clusterIPs[0]', `expected the same address as spec.clusterIP (${describe(ip)}), got ${describe(first)}`)
  }
  return ip
}

function readTrafficPolicy (ctx: Ctx, spec: Raw, key: string): TrafficPolicy {
  // `Global` is the pre-1.22 spelling of Cluster and still appears in old manifests.
  const v = ctx.oneOf(spec, key, 'spec', ['Cluster', 'Local', 'Global'] as const, 'Cluster')
  return v === 'Local' ? 'Local' : 'Cluster'
}

function readHealthCheckNodePort (ctx: Ctx, spec: Raw, type: ServiceType, policy: TrafficPolicy): number {
  const v = field(spec, 'healthCheckNodePort')
  if (v === undefined || v === 0) return 0
  if (!isPortNumber(v)) {
    ctx.issue('spec.healthCheckNodePort', `expected an integer 1-65535, got ${describe(v)}`)
    return 0
  }
  if (type !== 'LoadBalancer' || policy !== 'Local') {
    ctx.issue('spec.healthCheckNodePort', `may only be set when type is LoadBalancer and externalTrafficPolicy is Local, got type ${type} with externalTrafficPolicy ${policy}`)
    return 0
  }
  return v
}

function readSourceRanges (ctx: Ctx, spec: Raw, annotations: Record<string, string>, type: ServiceType): string[] {
  const hint = 'a CIDR such as 203.0.113.0/24 or 2001:db8::/32'
  const list = ctx.list(spec, 'loadBalancerSourceRanges', 'spec')
  const out: string[] = []
  for (let i = 0; i < list.length; i++) {
    const v = list[i]
    const c = typeof v === 'string' ? v.trim() : v
    if (typeof c === 'string' && isCIDR(c)) out.push(c)
    else ctx.issue(at('spec.loadBalancerSourceRanges', i), `expected ${hint}, got ${describe(v)}`)
  }
  // The API server's rule: the field belongs to load balancers only.
  if (list.length > 0 && type !== 'LoadBalancer') {
    ctx.issue('spec.loadBalancerSourceRanges', `may only be used when type is LoadBalancer, got type ${type}`)
  }
  const ann = annotations[SOURCE_RANGES_ANNOTATION]
  if (list.length > 0 || ann === undefined || type !== 'LoadBalancer') return out
  for (const part of ann.split(',')) {
    const c = part.trim()
    if (c === '') continue
    if (isCIDR(c)) out.push(c)
    else ctx.issue(`metadata.annotations["${SOURCE_RANGES_ANNOTATION}"]`, `expected comma-separated CIDRs (${hint}), got ${describe(c)}`)
  }
  return out
}

function readIPList (ctx: Ctx, list: unknown[], path: string, use: AddressUse): string[] {
  const out: string[] = []
  for (let i = 0; i < list.length; i++) {
    const v = list[i]
    if (typeof v !== 'string' || !isIP(v)) ctx.issue(at(path, i), `expected an IPv4 or IPv6 address, got ${describe(v)}`)
    else if (allowed(ctx, at(path, i), v, use)) out.push(v)
  }
  return out
}

/** False (with an issue at `path`) when the API server, or a socket, refuses `ip` for `use` (ip.ts). */
function allowed (ctx: Ctx, path: string, ip: string, use: AddressUse): boolean {
  const why = refusedAddress(ip, use)
  if (why !== '') ctx.issue(path, why)
  return why === ''
}

function readPorts (ctx: Ctx, rawPorts: unknown[], type: ServiceType): ServicePort[] {
  const ports: ServicePort[] = []
  // With one port there is nothing to compare: no Sets per service.
  const names = rawPorts.length > 1 ? new Set<string>() : null
  const pairs = rawPorts.length > 1 ? new Set<string>() : null
  for (let i = 0; i < rawPorts.length; i++) {
    const rp = rawPorts[i]
    const path = at('spec.ports', i)
    if (!isRecord(rp)) {
      ctx.issue(path, `expected a port object, got ${describe(rp)}`)
      continue
    }
    const name = ctx.str(rp, 'name', path) ?? ''
    if (name === '') {
      if (rawPorts.length > 1) ctx.issue(`${path}.name`, 'expected a port name: every port needs one when a service has more than one port')
    } else if (!isDNS1123Label(name)) {
      ctx.issue(`${path}.name`, `expected a DNS-1123 label (${DNS1123_LABEL_HINT}), got ${describe(name)}`)
    } else if (names?.has(name) === true) {
      ctx.issue(`${path}.name`, `expected a unique port name, got ${describe(name)} a second time`)
    }
    names?.add(name)

    const protocol = ctx.protocol(rp, 'protocol', path)
    const port = ctx.port(rp, 'port', path)
    if (pairs !== null && port !== undefined && protocol !== undefined) {
      const pair = `${port}/${protocol}`
      if (pairs.has(pair)) ctx.issue(path, `expected each port/protocol pair once, got ${pair} a second time`)
      pairs.add(pair)
    }
    const targetPort = readTargetPort(ctx, field(rp, 'targetPort'), `${path}.targetPort`, port)

    let nodePort = 0
    const np = field(rp, 'nodePort')
    // 0 is what the API returns for "not allocated yet".
    if (np !== undefined && np !== 0) {
      if (!isPortNumber(np)) {
        ctx.issue(`${path}.nodePort`, `expected an integer 1-65535, got ${describe(np)}`)
      } else if (type !== 'NodePort' && type !== 'LoadBalancer') {
        ctx.issue(`${path}.nodePort`, `expected no nodePort for a ${type} service (only NodePort and LoadBalancer have them), got ${np}`)
      } else {
        nodePort = np
      }
    }

    if (port !== undefined && protocol !== undefined && targetPort !== undefined) {
      ports.push({ name, protocol, port, targetPort, nodePort })
    }
  }
  return ports
}

/** intOrString, defaulted like the API server: absent, 0 or "" means "same as port". */
function readTargetPort (ctx: Ctx, v: unknown, path: string, port: number | undefined): number | string | undefined {
  if (v === undefined || v === 0 || v === '') return port
  if (isPortNumber(v)) return v
  if (typeof v === 'string') {
    if (/^[0-9]+$/.test(v)) {
      const n = Number(v)
      if (isPortNumber(n)) return n
    } else if (isIANASvcName(v)) {
      return v
    }
  }
  ctx.issue(path, `expected an integer 1-65535 or a port name (${IANA_SVC_NAME_HINT}), got ${describe(v)}`)
  return undefined
}
