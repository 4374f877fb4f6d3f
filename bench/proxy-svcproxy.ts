// svcproxy under test, alone in its process: the library API as an embedder uses it
// (createProxy + apply), ephemeral ports, silent logger, no event listeners (access log off;
// the per-service and per-endpoint counters are always on). One Service per kind of traffic.
import pino from 'pino'
import { createProxy } from '../lib/index.js'
import { type Backends, type Endpoint, type ProxyAddresses, childConfig, failToParent, serveParent } from './child.js'

interface Config extends Backends {
  /** sessionAffinity ClientIP on every service (default None). */
  affinity?: boolean
}

function service (name: string, clusterIP: string, port: number, protocol: 'TCP' | 'UDP', backends: Endpoint[], affinity: boolean): unknown[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: 'default' },
      spec: { clusterIP, ports: [{ port, protocol }], sessionAffinity: affinity ? 'ClientIP' : 'None' },
    },
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name, namespace: 'default' },
      // One subset per backend: they listen on different ephemeral ports.
      subsets: backends.map((b) => ({ addresses: [{ ip: b.ip }], ports: [{ port: b.port, protocol }] })),
    },
  ]
}

async function main (): Promise<void> {
  const cfg = childConfig<Config>()
  const affinity = cfg.affinity === true
  // SVCPROXY_BENCH_POOLED=0: A/B of the pooled read buffers (docs/performance.md).
  const proxy = createProxy({ ephemeralPorts: true, logger: pino({ level: 'silent' }), pooledReads: process.env.SVCPROXY_BENCH_POOLED !== '0' })
  await proxy.apply([
    ...service('bench-http', '127.96.10.1', 80, 'TCP', cfg.http, affinity),
    ...service('bench-bulk', '127.96.10.2', 9000, 'TCP', cfg.bulk, affinity),
    ...service('bench-udp', '127.96.10.3', 53, 'UDP', cfg.udp, affinity),
  ], '<bench>')
  const notes: Record<string, string> = {}
  const where = (svc: string, port: number, kind: string): Endpoint | null => {
    try {
      const a = proxy.address(svc, port)
      return { ip: a.address, port: a.port }
    } catch (err) {
      notes[kind] = (err as Error).message
      return null
    }
  }
  const out: ProxyAddresses = {
    http: where('default/bench-http', 80, 'http'),
    bulk: where('default/bench-bulk', 9000, 'bulk'),
    udp: where('default/bench-udp', 53, 'udp'),
    notes,
  }
  serveParent(out, () => proxy.close())
}

main().catch(failToParent)
