import { isIP } from 'node:net'
import { ConfigError, type ValidationIssue } from '../errors.js'
import { objectRef, type Service, type ServicePort } from '../model/types.js'
import { type Cidr, cidrContains, fnv1a, intToIpv4, parseCidr } from '../model/ip.js'

export interface PortRange { min: number, max: number }

export function parsePortRange (text: string, flag = '--service-node-port-range'): PortRange {
  const m = /^(\d+)-(\d+)$/.exec(text.trim())
  const min = Number(m?.[1])
  const max = Number(m?.[2])
  if (m === null || min < 1 || max > 65535 || min > max) {
    throw new ConfigError(`${flag}: expected a port range such as 30000-32767, got "${text}"`)
  }
  return { min, max }
}

/**
 * The API server's allocators (kube-proxy kept a `port_allocator`): clusterIPs from
 * --service-cluster-ip-range, nodePorts and healthCheckNodePorts from --service-node-port-range,
 * and which service (`namespace/name`) holds each address and port the table stores.
 */
export class Allocator {
  readonly clusterIPRange: Cidr
  readonly nodePortRange: PortRange
  private readonly clusterIPs = new Map<string, string>() // ip -> svcKey
  // Keyed by number alone: the API server's allocator is one bitmap for TCP and UDP, so
  // another service cannot take 30053/UDP when one holds 30053/TCP.
  private readonly nodePorts = new Map<number, string>() // nodePort -> svcKey

  constructor (clusterIPRange: string, nodePortRange: string) {
    this.clusterIPRange = parseCidr(clusterIPRange, '--service-cluster-ip-range')
    this.nodePortRange = parsePortRange(nodePortRange)
  }

  /** Records what a stored service holds. */
  reserve (key: string, s: Service): void {
    if (isIP(s.clusterIP) !== 0) this.clusterIPs.set(s.clusterIP, key)
    for (let i = 0; i < s.ports.length; i++) { const p = s.ports[i] as ServicePort; if (p.nodePort !== 0) this.nodePorts.set(p.nodePort, key) }
    if (s.healthCheckNodePort !== 0) this.nodePorts.set(s.healthCheckNodePort, key)
  }

  /** Frees what a stored service held (what another service holds now stays taken). */
  release (key: string, s: Service): void {
    if (this.clusterIPs.get(s.clusterIP) === key) this.clusterIPs.delete(s.clusterIP)
    for (const p of s.ports) {
      if (this.nodePorts.get(p.nodePort) === key) this.nodePorts.delete(p.nodePort)
    }
    if (this.nodePorts.get(s.healthCheckNodePort) === key) this.nodePorts.delete(s.healthCheckNodePort)
  }

  ipHolder (ip: string): string | undefined {
    return this.clusterIPs.get(ip)
  }

  portHolder (port: number): string | undefined {
    return this.nodePorts.get(port)
  }

  /** True when the given IP belongs to the allocation range. */
  inClusterRange (ip: string): boolean {
    return cidrContains(this.clusterIPRange, ip)
  }

  /** Hash the service key into the range, probe linearly: stable across restarts and nodes. */
  allocateIP (key: string, taken: (ip: string) => boolean): string | undefined {
    const { base, size } = this.clusterIPRange
    // Skip the network address and (for ranges > /31) the broadcast address.
    const first = size > 2 ? 1 : 0
    const usable = size > 2 ? size - 2 : size
    const start = fnv1a(key) % usable
    for (let i = 0; i < usable; i++) {
      const ip = intToIpv4((base + first + ((start + i) % usable)) >>> 0)
      if (!taken(ip)) return ip
    }
    return undefined
  }

  allocatePort (key: string, taken: (n: number) => boolean): number | undefined {
    const { min, max } = this.nodePortRange
    const size = max - min + 1
    const start = fnv1a(key) % size
    for (let i = 0; i < size; i++) {
      const n = min + ((start + i) % size)
      if (!taken(n)) return n
    }
    return undefined
  }
}

/**
 * The allocations of one write, checked before the table changes: the stored reservations
 * minus those of the services the write replaces or deletes, plus what the write claims.
 * Problems go to the caller's `issues`, in the order they are found.
 */
export class AllocationBatch {
  private readonly ipTaken = new Map<string, string>()
  private readonly portTaken = new Map<number, string>()
  private readonly pendingIP: Array<{ svc: Service, key: string }> = []
  private readonly pendingPorts: Array<{ svc: Service, key: string, idx: number }> = []

  constructor (private readonly alloc: Allocator, private readonly replaced: Set<string>, private readonly file: string, private readonly issues: ValidationIssue[]) {}

  private ipOwner (ip: string): string | undefined {
    const cur = this.alloc.ipHolder(ip)
    return cur !== undefined && !this.replaced.has(cur) ? cur : this.ipTaken.get(ip)
  }

  private portOwner (k: number): string | undefined {
    const cur = this.alloc.portHolder(k)
    return cur !== undefined && !this.replaced.has(cur) ? cur : this.portTaken.get(k)
  }

  /**
   * Keeps what `prev` (the stored version) was given, checks and reserves the explicit clusterIP
   * and node ports of `svc`, and queues the rest for `allocatePending`. Fills in `svc` (a copy).
   */
  claim (svc: Service, key: string, prev: Service | undefined): void {
    const { file, issues } = this
    const range = this.alloc.nodePortRange
    if (svc.type !== 'ExternalName' && svc.clusterIP === '' && prev !== undefined && prev.clusterIP !== 'None' && prev.clusterIP !== '') {
      svc.clusterIP = prev.clusterIP // clusterIP is immutable once allocated
    }
    if (svc.type !== 'ExternalName' && svc.clusterIP !== '' && svc.clusterIP !== 'None') {
      const owner = this.ipOwner(svc.clusterIP)
      if (owner !== undefined && owner !== key) {
        issues.push({ file, object: objectRef(svc), path: 'spec.clusterIP', message: `expected an unused address; ${svc.clusterIP} is already allocated to Service ${owner}` })
      } else this.ipTaken.set(svc.clusterIP, key)
    } else if (svc.type !== 'ExternalName' && svc.clusterIP === '') this.pendingIP.push({ svc, key })

    const wantsNodePort = svc.type === 'NodePort' || (svc.type === 'LoadBalancer' && svc.allocateLoadBalancerNodePorts)
    // One service may use a number once per protocol (53/TCP and 53/UDP may share it).
    // Created at the first node port: most services have none, and a Set each would be waste.
    let ownPorts: Set<string> | undefined
    svc.ports.forEach((p, idx) => {
      if (p.nodePort === 0 && wantsNodePort) {
        const old = prev?.ports.find((q) => q.name === p.name && q.protocol === p.protocol)
        if (old !== undefined && old.nodePort !== 0) p.nodePort = old.nodePort
      }
      if (p.nodePort !== 0) {
        if (svc.type === 'ClusterIP' || svc.type === 'ExternalName') {
          issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected no nodePort for a Service of type ${svc.type}` })
          return
        }
        if (p.nodePort < range.min || p.nodePort > range.max) {
          issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected a port in the node port range ${range.min}-${range.max}, got ${p.nodePort}` })
          return
        }
        const own = `${p.protocol}/${p.nodePort}`
        const owner = this.portOwner(p.nodePort)
        if (owner !== undefined && owner !== key) {
          issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected an unused node port; ${p.nodePort} is already allocated to Service ${owner}` })
        } else if (ownPorts?.has(own) === true) {
          issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `expected each node port once per protocol, got ${own} a second time` })
        } else {
          (ownPorts ??= new Set()).add(own)
          this.portTaken.set(p.nodePort, key)
        }
      } else if (wantsNodePort) this.pendingPorts.push({ svc, key, idx })
    })
    // healthCheckNodePort comes from the same range and may be nobody else's node port.
    const hc = svc.healthCheckNodePort
    if (hc !== 0) {
      const owner = this.portOwner(hc)
      if (hc < range.min || hc > range.max) {
        issues.push({ file, object: objectRef(svc), path: 'spec.healthCheckNodePort', message: `expected a port in the node port range ${range.min}-${range.max}, got ${hc}` })
      } else if ((owner !== undefined && owner !== key) || ownPorts?.has(`TCP/${hc}`) === true) {
        issues.push({ file, object: objectRef(svc), path: 'spec.healthCheckNodePort', message: `expected an unused node port; ${hc} is already allocated to Service ${owner ?? key}` })
      } else this.portTaken.set(hc, key)
    }
  }

  /** Allocations after every explicit claim, in a stable order, so results do not depend on file order. */
  allocatePending (): void {
    const { file, issues, alloc } = this
    this.pendingIP.sort((a, b) => cmp(a.key, b.key))
    for (const { svc, key } of this.pendingIP) {
      const ip = alloc.allocateIP(key, (ip) => this.ipOwner(ip) !== undefined)
      if (ip === undefined) {
        issues.push({ file, object: objectRef(svc), path: 'spec.clusterIP', message: `no free address left in --service-cluster-ip-range ${intToIpv4(alloc.clusterIPRange.base)}/${alloc.clusterIPRange.bits}` })
      } else {
        svc.clusterIP = ip
        this.ipTaken.set(ip, key)
      }
    }
    this.pendingPorts.sort((a, b) => cmp(a.key, b.key) || a.idx - b.idx)
    for (const { svc, key, idx } of this.pendingPorts) {
      const p = svc.ports[idx] as ServicePort
      const port = alloc.allocatePort(`${key}:${p.name}/${p.protocol}`, (n) => this.portOwner(n) !== undefined)
      if (port === undefined) {
        issues.push({ file, object: objectRef(svc), path: `spec.ports[${idx}].nodePort`, message: `no free port left in --service-node-port-range ${alloc.nodePortRange.min}-${alloc.nodePortRange.max}` })
      } else {
        p.nodePort = port
        this.portTaken.set(port, key)
      }
    }
  }
}

function cmp (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
