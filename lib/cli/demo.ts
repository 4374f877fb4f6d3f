import { createServer, type Server } from 'node:http'

/** Three "pods" on their own loopback addresses, as a cluster would give them their own IPs. */
export const DEMO_PODS = [
  { name: 'hello-7d4b9-a1', ip: '127.0.20.1' },
  { name: 'hello-7d4b9-b2', ip: '127.0.20.2' },
  { name: 'hello-7d4b9-c3', ip: '127.0.20.3' },
]
export const DEMO_CONTAINER_PORT = 9376
export const DEMO_CLUSTER_IP = '127.96.0.80'

/** The manifest the demo serves: a Service selecting Running+Ready pods by label, named targetPort. */
export function demoManifest (servicePort: number): unknown {
  return {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'hello', namespace: 'default' },
        spec: { clusterIP: DEMO_CLUSTER_IP, selector: { app: 'hello' }, ports: [{ name: 'http', port: servicePort, targetPort: 'http', protocol: 'TCP' }] },
      },
      ...DEMO_PODS.map((p) => ({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: p.name, namespace: 'default', labels: { app: 'hello' } },
        spec: { nodeName: 'demo-node', containers: [{ name: 'hello', image: 'hello', ports: [{ name: 'http', containerPort: DEMO_CONTAINER_PORT }] }] },
        status: { phase: 'Running', podIP: p.ip, conditions: [{ type: 'Ready', status: 'True' }] },
      })),
    ],
  }
}

/** Starts the pods' HTTP servers; each answers with its pod name. */
export async function startDemoPods (): Promise<Server[]> {
  const servers: Server[] = []
  for (const p of DEMO_PODS) {
    const s = createServer((req, res) => {
      req.resume()
      res.setHeader('content-type', 'text/plain')
      res.end(`${p.name}\n`)
    })
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject)
      s.listen(DEMO_CONTAINER_PORT, p.ip, () => resolve())
    })
    servers.push(s)
  }
  return servers
}
