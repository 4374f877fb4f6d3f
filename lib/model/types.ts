// The normalized, validated form of the Kubernetes objects svcproxy understands.
// Parsers in this folder turn raw JSON (kubectl output) into these shapes; every
// other module works only with these, never with raw JSON.

export type Protocol = 'TCP' | 'UDP'

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName'

export type TrafficPolicy = 'Cluster' | 'Local'

export type ObjectKind = 'Service' | 'Endpoints' | 'EndpointSlice' | 'Pod'

export interface ServicePort {
  /** '' when the service has a single unnamed port. */
  name: string
  protocol: Protocol
  port: number
  /** A number, or a container port name resolved per endpoint/pod. Defaults to `port`. */
  targetPort: number | string
  /** 0 when none is set (an allocator may fill it in later). */
  nodePort: number
}

export interface Service {
  kind: 'Service'
  namespace: string
  name: string
  /** Stable identity for ordering/hashing; metadata.uid when present. */
  uid: string
  type: ServiceType
  /** '' = to be allocated, 'None' = headless, else an IPv4/IPv6 address. */
  clusterIP: string
  ports: ServicePort[]
  /** null when the service has no selector (hand-written Endpoints). */
  selector: Record<string, string> | null
  sessionAffinity: 'None' | 'ClientIP'
  /** sessionAffinityConfig.clientIP.timeoutSeconds, default 10800. */
  affinityTimeoutSeconds: number
  externalIPs: string[]
  /** status.loadBalancer.ingress[].ip (hostname-only entries dropped). */
  loadBalancerIPs: string[]
  /**
   * spec.loadBalancerSourceRanges (else the cloud annotation
   * service.beta.kubernetes.io/load-balancer-source-ranges): CIDRs allowed to reach the
   * load-balancer addresses. Empty: everyone.
   */
  loadBalancerSourceRanges: string[]
  /** spec.healthCheckNodePort (LoadBalancer with externalTrafficPolicy Local); 0 = none. */
  healthCheckNodePort: number
  externalName: string
  externalTrafficPolicy: TrafficPolicy
  internalTrafficPolicy: TrafficPolicy
  publishNotReadyAddresses: boolean
  allocateLoadBalancerNodePorts: boolean
  annotations: Record<string, string>
  labels: Record<string, string>
}

export interface EndpointPort {
  /** '' when unnamed. */
  name: string
  port: number
  protocol: Protocol
}

export interface EndpointAddress {
  ip: string
  nodeName: string
  /** Name of the Pod this address belongs to, '' when unknown. */
  podName: string
}

export interface EndpointSubset {
  addresses: EndpointAddress[]
  notReadyAddresses: EndpointAddress[]
  ports: EndpointPort[]
}

export interface Endpoints {
  kind: 'Endpoints'
  namespace: string
  name: string
  subsets: EndpointSubset[]
}

export interface SliceEndpointConditions {
  /** Absent in the API means "ready" (true). */
  ready: boolean
  /** Absent means equal to ready. */
  serving: boolean
  terminating: boolean
}

export interface SliceEndpoint {
  addresses: string[]
  conditions: SliceEndpointConditions
  nodeName: string
  podName: string
}

export interface EndpointSlice {
  kind: 'EndpointSlice'
  namespace: string
  name: string
  /** labels['kubernetes.io/service-name'] */
  serviceName: string
  addressType: 'IPv4' | 'IPv6' | 'FQDN'
  endpoints: SliceEndpoint[]
  ports: EndpointPort[]
}

export interface ContainerPort {
  name: string
  containerPort: number
  protocol: Protocol
}

export interface Pod {
  kind: 'Pod'
  namespace: string
  name: string
  labels: Record<string, string>
  /** '' until the pod is scheduled and has an IP. */
  podIP: string
  phase: string
  /** status.conditions[type=Ready].status === 'True' */
  ready: boolean
  /** metadata.deletionTimestamp is set. */
  terminating: boolean
  nodeName: string
  ports: ContainerPort[]
}

export type KubeObject = Service | Endpoints | EndpointSlice | Pod

/** `Kind namespace/name`, the way errors and logs name an object. */
export function objectRef (o: { kind: string, namespace: string, name: string }): string {
  return `${o.kind} ${o.namespace}/${o.name}`
}

/** Key of an object in the store: `Kind/namespace/name`. */
export function objectKey (o: { kind: string, namespace: string, name: string }): string {
  return `${o.kind}/${o.namespace}/${o.name}`
}
