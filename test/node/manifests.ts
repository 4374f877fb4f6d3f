// The objects the namespace cluster serves, as `kubectl get -o json` would show them.

import type { PodSpec } from './netns.js'

export const TCP_TARGET = 8080
export const UDP_TARGET = 5353

export interface ServiceShape {
  name: string
  clusterIP: string
  tcpPort: number
  udpPort?: number
  nodePorts?: { tcp: number, udp?: number }
  externalIPs?: string[]
  externalTrafficPolicy?: 'Cluster' | 'Local'
}

export function service (s: ServiceShape): unknown {
  const ports: unknown[] = [{ name: 'tcp', protocol: 'TCP', port: s.tcpPort, targetPort: TCP_TARGET, ...(s.nodePorts !== undefined ? { nodePort: s.nodePorts.tcp } : {}) }]
  if (s.udpPort !== undefined) ports.push({ name: 'udp', protocol: 'UDP', port: s.udpPort, targetPort: UDP_TARGET, ...(s.nodePorts?.udp !== undefined ? { nodePort: s.nodePorts.udp } : {}) })
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: 'default' },
    spec: {
      type: s.nodePorts !== undefined ? 'NodePort' : 'ClusterIP',
      clusterIP: s.clusterIP,
      ports,
      ...(s.externalIPs !== undefined ? { externalIPs: s.externalIPs } : {}),
      ...(s.externalTrafficPolicy !== undefined ? { externalTrafficPolicy: s.externalTrafficPolicy } : {}),
    },
  }
}

/** The service's one EndpointSlice, listing `pods` (each on its node) as ready. */
export function endpointSlice (serviceName: string, pods: PodSpec[], udp = true): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${serviceName}-x1`, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: pods.map((p) => ({
      addresses: [p.ip],
      conditions: { ready: true },
      nodeName: `node${p.node}`,
      targetRef: { kind: 'Pod', namespace: 'default', name: p.name },
    })),
    ports: [{ name: 'tcp', protocol: 'TCP', port: TCP_TARGET }, ...(udp ? [{ name: 'udp', protocol: 'UDP', port: UDP_TARGET }] : [])],
  }
}

export function list (items: unknown[]): unknown {
  return { apiVersion: 'v1', kind: 'List', items }
}
