import type { ServiceProxy } from '../api/service-proxy.js'
import type { FaultScope } from '../faults/toxic.js'
import { joinHostPort } from './addresses.js'

/**
 * A Kubernetes service port seen as a Toxiproxy proxy: named `name.namespace:port` (the port's
 * name, its number when unnamed: the DNS form, nothing to escape in a URL), listening on its
 * clusterIP, its upstream the first endpoint. Its toxics apply to that service port.
 */
export interface KubeProxy {
  name: string
  listen: string
  upstream: string
  scope: FaultScope
}

/** Every served service port not owned by the API (`owns`), in the proxy's order. */
export function kubeProxies (proxy: ServiceProxy, owns: (namespace: string, name: string) => boolean): KubeProxy[] {
  const out: KubeProxy[] = []
  for (const s of proxy.status()) {
    if (owns(s.namespace, s.name)) continue
    const fe = s.frontends.find((f) => f.kind === 'clusterIP')
    if (fe === undefined) continue // headless, ExternalName: nothing listens
    out.push({
      name: `${s.name}.${s.namespace}:${s.port}`,
      listen: joinHostPort(fe.address, fe.boundPort !== 0 ? fe.boundPort : fe.port),
      upstream: s.endpoints[0]?.endpoint ?? '',
      scope: { service: `${s.namespace}/${s.name}`, port: s.port },
    })
  }
  return out
}

/**
 * The one named `name`, or undefined: looked up in the table and the frontends directly (no
 * status() of every port per request), the same answer kubeProxies() gives for it.
 */
export function kubeProxy (proxy: ServiceProxy, owns: (namespace: string, name: string) => boolean, name: string): KubeProxy | undefined {
  const m = /^([a-z0-9-]+)\.([a-z0-9-]+):([a-z0-9-]+)$/.exec(name)
  if (m === null) return undefined
  const [, svc = '', ns = '', port = ''] = m
  if (owns(ns, svc)) return undefined
  const st = proxy.table.statesOf(`${ns}/${svc}`).find((s) => (s.port.name === '' ? String(s.port.port) : s.port.name) === port)
  if (st === undefined) return undefined
  for (const fe of proxy.dataplane.frontends.values()) {
    if (fe.spec.runtimeId !== st.id || fe.spec.kind !== 'clusterIP') continue
    const first = proxy.dataplane.runtimes.get(st.id)?.balancer.endpoints[0]?.key ?? st.endpoints[0]?.key ?? ''
    return { name, listen: joinHostPort(fe.spec.host, fe.boundPort !== 0 ? fe.boundPort : fe.spec.port), upstream: first, scope: { service: `${ns}/${svc}`, port } }
  }
  return undefined
}
