// An endpoint at a service port's own address: every connection to it comes back into the
// proxy's own listener, which dials it again (one request made 9,991 nested connections before
// the process ran out of descriptors). Refused at validation when the Service is in the same
// document; the data plane never dials one whatever the source (frontend/runtime.ts).

import type { Ctx } from './reader.js'
import type { EndpointAddress, EndpointSubset, KubeObject, Service, ServicePort } from './types.js'

/** Which of the service's own addresses `ip:port` is for port `sp`; '' when none. */
export function selfLoopOf (svc: Service, sp: ServicePort, ip: string, port: number, isLocal?: (ip: string) => boolean): string {
  if (port === sp.port) {
    if (ip === svc.clusterIP) return 'clusterIP'
    if (svc.externalIPs.includes(ip)) return 'externalIP'
    if (svc.type === 'LoadBalancer' && svc.loadBalancerIPs.includes(ip)) return 'load-balancer IP'
  }
  // kube-proxy holds a nodePort open on every node address: any local address there is ours.
  const nodePorts = svc.type === 'NodePort' || svc.type === 'LoadBalancer'
  if (nodePorts && sp.nodePort !== 0 && port === sp.nodePort && isLocal !== undefined && isLocal(ip)) return 'node address'
  return ''
}

/** One parsed object and the issue collector of its place in the document. */
export interface Placed { obj: KubeObject, ctx: Ctx }

/**
 * Issues for endpoints at their own Service's address, where the Service is in the same document
 * (node addresses are known only at run time). Paths index the parsed lists, so it runs only on a
 * document that is otherwise valid (where they match the input's).
 */
export function checkSelfLoops (placed: readonly Placed[]): void {
  if (placed.length < 2) return // a loop needs a Service and its endpoints
  const services = new Map<string, Service>()
  // Indexed loops: a for-of allocates a result per step until the code is optimized, and a load runs it once.
  for (let n = 0; n < placed.length; n++) { const obj = (placed[n] as Placed).obj; if (obj.kind === 'Service') services.set(`${obj.namespace}/${obj.name}`, obj) }
  if (services.size === 0) return
  // Paths are built only for an issue: this walks every endpoint of the document.
  for (let n = 0; n < placed.length; n++) {
    const { obj, ctx } = placed[n] as Placed
    if (obj.kind === 'Endpoints') {
      const svc = services.get(`${obj.namespace}/${obj.name}`)
      if (svc === undefined) continue
      for (let i = 0; i < obj.subsets.length; i++) {
        const sub = obj.subsets[i] as EndpointSubset
        for (let s = 0; s < svc.ports.length; s++) {
          const sp = svc.ports[s] as ServicePort
          const p = sub.ports.find((x) => x.name === sp.name && x.protocol === sp.protocol)
          if (p === undefined) continue
          for (let j = 0; j < sub.addresses.length; j++) {
            const ip = (sub.addresses[j] as EndpointAddress).ip
            if (selfLoopOf(svc, sp, ip, p.port) !== '') report(ctx, svc, sp, ip, p.port, `subsets[${i}].addresses[${j}].ip`)
          }
          for (let j = 0; j < sub.notReadyAddresses.length; j++) {
            const ip = (sub.notReadyAddresses[j] as EndpointAddress).ip
            if (selfLoopOf(svc, sp, ip, p.port) !== '') report(ctx, svc, sp, ip, p.port, `subsets[${i}].notReadyAddresses[${j}].ip`)
          }
        }
      }
    } else if (obj.kind === 'EndpointSlice') {
      const svc = services.get(`${obj.namespace}/${obj.serviceName}`)
      if (svc === undefined || obj.addressType === 'FQDN') continue
      for (const sp of svc.ports) {
        const p = obj.ports.find((x) => x.name === sp.name && x.protocol === sp.protocol)
        if (p === undefined) continue
        obj.endpoints.forEach((e, i) => { e.addresses.forEach((ip, j) => { if (selfLoopOf(svc, sp, ip, p.port) !== '') report(ctx, svc, sp, ip, p.port, `endpoints[${i}].addresses[${j}]`) }) })
      }
    }
  }
}

function report (ctx: Ctx, svc: Service, sp: ServicePort, ip: string, port: number, path: string): void {
  const own = selfLoopOf(svc, sp, ip, port)
  const host = ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`
  const name = sp.name === '' ? String(sp.port) : `"${sp.name}"`
  ctx.issue(path, `expected an endpoint other than the ${own} of Service ${svc.namespace}/${svc.name} at its port ${name}, got ${host}: connections would loop back into svcproxy`)
}
