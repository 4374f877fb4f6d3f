// Kubernetes Service semantics end to end (issue #5): every test sends real traffic through a
// proxy on loopback and checks which endpoint answered. See docs/services.md.
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { connect, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import {
  type DialFailedEvent, type KubeObject, type ServiceProxy,
  ValidationError, parseObjects, readDocumentFile,
} from '../lib/index.js'
import { Table } from '../lib/table/table.js'
import { endpointSlice as slice, fetchAll, listen, testProxy, udpClient, udpServer, until } from './helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
/** The part of a tap Test the helpers use. */
interface Tap { teardown: (fn: () => unknown) => void, comment: (...args: unknown[]) => void }
type Raw = Record<string, unknown>

/** A backend that sends its name and closes; listens on host:port (0 = ephemeral). */
async function named (t: Tap, name: string, host: string, port = 0): Promise<{ port: number, server: Server, hits: () => number }> {
  let n = 0
  const server = createServer((s) => { n++; s.on('error', () => {}); s.end(name) })
  const bound = await listen(server, host, port)
  t.teardown(() => server.close())
  return { port: bound, server, hits: () => n }
}

/** Like fetchAll, from a chosen client address (ClientIP affinity keys on it). */
function fetchFrom (host: string, port: number, localAddress: string): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect({ host, port, localAddress })
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`ERR:${e.code ?? e.message}`))
    s.on('close', () => { if (!s.errored) resolve(Buffer.concat(chunks).toString()) })
  })
}

function service (name: string, spec: Raw, extra: Raw = {}): Raw {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec, ...extra }
}

interface PodOpts { nodeName?: string, ready?: boolean, terminating?: boolean, phase?: string }

/** A pod; `ports` maps container port names to numbers (the test backends' ephemeral ports). */
function pod (name: string, ip: string, labels: Record<string, string>, ports: Record<string, number>, o: PodOpts = {}): Raw {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', labels, ...(o.terminating === true ? { deletionTimestamp: '2024-01-01T00:00:00Z' } : {}) },
    spec: { nodeName: o.nodeName ?? 'node-a', containers: [{ name: 'c', ports: Object.entries(ports).map(([n, p]) => ({ name: n, containerPort: p })) }] },
    status: { phase: o.phase ?? 'Running', podIP: ip, conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True' }] },
  }
}


async function collect (n: number, host: string, port: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(await fetchAll(host, port))
  return out
}

const uniq = (xs: string[]): string[] => [...new Set(xs)].sort()

/** Binds and releases host:port: true when nothing else holds it. */
async function isFree (host: string, port: number): Promise<boolean> {
  const s = createServer()
  try {
    await listen(s, host, port)
    s.close()
    await once(s, 'close')
    return true
  } catch {
    return false
  }
}

/**
 * Starts a named backend at every pod of an example file, on the pod IP and its containerPort.
 * The examples use port 80 (as written); without the privilege to bind it, each pod's port
 * becomes a named ephemeral port and the service's targetPort that name, which keeps the test
 * meaningful but is reported.
 */
async function servePods (t: Tap, items: Raw[]): Promise<Raw[]> {
  const pods = items.filter((o) => o.kind === 'Pod') as Array<{ metadata: { name: string }, status: { podIP: string }, spec: { containers: Array<{ ports: Array<{ name?: string, containerPort: number }> }> } }>
  let rewrote = false
  for (const p of pods) {
    const cp = p.spec.containers[0]?.ports[0]
    if (cp === undefined) throw new Error('example pod without a container port')
    try {
      await named(t, p.metadata.name, p.status.podIP, cp.containerPort)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err
      const b = await named(t, p.metadata.name, p.status.podIP)
      cp.name = 'http'
      cp.containerPort = b.port
      rewrote = true
    }
  }
  if (rewrote) {
    t.comment('no privilege to bind port 80: example pods serve on named ephemeral ports')
    for (const o of items) if (o.kind === 'Service') for (const sp of (o.spec as { ports: Raw[] }).ports) sp.targetPort = 'http'
  }
  return items
}

async function example (file: string): Promise<Raw[]> {
  // Read through the real loader first: the example must be valid as shipped.
  await readDocumentFile(join(root, 'examples', file))
  return (JSON.parse(await readFile(join(root, 'examples', file), 'utf8')) as { items: Raw[] }).items
}

/** Replaces Date.now with a clock the test moves (affinity TTLs are hours long). */
function fakeClock (t: Tap): { advance: (seconds: number) => void } {
  const real = Date.now
  let offset = 0
  Date.now = () => real() + offset
  t.teardown(() => { Date.now = real })
  return { advance: (s) => { offset += s * 1000 } }
}

function parse (raw: unknown[]): { objects: KubeObject[] } {
  return { objects: parseObjects(raw, 'test').objects }
}

function validationIssues (err: unknown): Array<{ path: string, message: string }> {
  if (!(err instanceof ValidationError)) throw err
  return err.issues.map((i) => ({ path: i.path, message: i.message }))
}

// ---------------------------------------------------------------------------------------------
// Seed examples

// The seed example needs the real port 30000; another process holding it is not a failure of ours.
const port30000 = await isFree('127.0.0.1', 30000)
t.test('seed: httpd-svc (NodePort 30000) is reachable at 127.0.0.1:30000 and at clusterIP:8080', { skip: port30000 ? false : '127.0.0.1:30000 is held by another process' }, async (t) => {
  const items = await servePods(t, await example('httpd-nodeport.json'))
  // The one proxy with real ports: the example's nodePort and port are what is checked.
  const p = testProxy(t, { ephemeralPorts: false, nodePortAddresses: ['127.0.0.1/32'] })
  await p.apply(items)
  const st = p.status()[0]
  t.ok(st !== undefined)
  const nodePort = st?.frontends.find((f) => f.kind === 'nodePort')
  t.same(nodePort && { address: nodePort.address, boundPort: nodePort.boundPort, state: nodePort.state }, { address: '127.0.0.1', boundPort: 30000, state: 'listening' })
  t.same(uniq(await collect(4, '127.0.0.1', 30000)), ['httpd-7c9d8b6f4-k2x9p', 'httpd-7c9d8b6f4-q7m4z'], 'both pods answer at the node port')

  const clusterIP = st?.clusterIP ?? ''
  t.ok(p.table.inClusterRange(clusterIP), `clusterIP ${clusterIP} allocated from the default range`)
  t.same(uniq(await collect(4, clusterIP, 8080)), ['httpd-7c9d8b6f4-k2x9p', 'httpd-7c9d8b6f4-q7m4z'], 'both pods answer at clusterIP:8080')
})

t.test('seed: my-nginx (LoadBalancer with externalIPs) is reachable at its external IP', async (t) => {
  const items = await servePods(t, await example('my-nginx-lb.json'))
  const p = testProxy(t, { nodePortAddresses: ['127.0.0.1/32'] })
  await p.apply(items)
  const ext = p.address('my-nginx', 80, 'externalIP')
  t.equal(ext.address, '127.0.130.1')
  t.same(uniq(await collect(4, ext.address, ext.port)), ['my-nginx-5b56ccd65f-8xk2c', 'my-nginx-5b56ccd65f-vd4tq'])
  // LoadBalancer implies NodePort: one was allocated from the default range and is served.
  const svc = p.table.services.get('default/my-nginx')
  const np = svc?.ports[0]?.nodePort ?? 0
  t.ok(np >= 30000 && np <= 32767, `nodePort ${np} allocated`)
  const npa = p.address('my-nginx', 80, 'nodePort')
  t.equal(npa.address, '127.0.0.1')
  t.match(await fetchAll(npa.address, npa.port), /^my-nginx-/)
  const cip = p.address('my-nginx', 80)
  t.match(await fetchAll(cip.address, cip.port), /^my-nginx-/)
})

t.test('seed: myservice follows its pods as they are scaled from 2 to 1', async (t) => {
  const items = await servePods(t, await example('myservice.json'))
  const p = testProxy(t)
  await p.apply(items)
  const a = p.address('myservice', 80)
  const both = ['myservice-6d4c9f8b7-2lqzn', 'myservice-6d4c9f8b7-h8wfr']
  t.same(uniq(await collect(4, a.address, a.port)), both)

  // Scale-down: the pod first terminates (deletionTimestamp, no longer Ready), then is deleted.
  const victim = structuredClone(items.find((o) => o.kind === 'Pod' && (o.metadata as Raw).name === both[1])) as Raw
  ;(victim.metadata as Raw).deletionTimestamp = '2024-01-01T00:00:00Z'
  ;(victim.status as Raw).conditions = [{ type: 'Ready', status: 'False' }]
  await p.apply(victim)
  t.same(uniq(await collect(4, a.address, a.port)), [both[0]], 'a terminating pod gets no new connections')
  await p.delete(`pod default/${both[1]}`)
  t.same(uniq(await collect(4, a.address, a.port)), [both[0]], 'one pod left')
  t.equal(p.status()[0]?.endpoints.length, 1)
})

// ---------------------------------------------------------------------------------------------
// NodePort

t.test('nodePort: wildcard by default, --nodeport-addresses selects local addresses', async (t) => {
  const svc = parse([service('np', { type: 'NodePort', clusterIP: '127.51.0.1', ports: [{ port: 80, nodePort: 30080 }] })]).objects
  const hostsOf = (p: ServiceProxy): string[] => {
    // Table only: nothing binds, so the wildcard case opens no socket beyond loopback.
    p.table.write(svc, [], 't')
    const st = p.table.statesOf('default/np')[0]
    if (st === undefined) throw new Error('no state')
    return p.dataplane.frontendSpecs(st).filter((f) => f.kind === 'nodePort').map((f) => `${f.host}:${f.port}`)
  }
  t.same(hostsOf(testProxy(t)), ['0.0.0.0:30080'], 'all addresses by default')
  t.same(hostsOf(testProxy(t, { bindAddress: '127.0.0.1' })), ['127.0.0.1:30080'], '--bind-address when no CIDRs')
  t.same(hostsOf(testProxy(t, { nodePortAddresses: ['127.0.0.1/32'] })), ['127.0.0.1:30080'])
  // lo reports 127.0.0.1 alone (the rest of 127/8 is routed, not assigned): no address inside.
  t.same(hostsOf(testProxy(t, { nodePortAddresses: ['127.0.0.2/32'] })), [], 'no local address in the CIDRs: no node port')
})

t.test('nodePort: traffic at the node port reaches the endpoints', async (t) => {
  const a = await named(t, 'a', '127.0.124.1')
  const p = testProxy(t, { nodePortAddresses: ['127.0.0.1/32'] })
  await p.apply([
    service('np', { type: 'NodePort', clusterIP: '127.51.0.2', selector: { app: 'np' }, ports: [{ port: 80, targetPort: 'http' }] }),
    pod('np-1', '127.0.124.1', { app: 'np' }, { http: a.port }),
  ])
  const n = p.address('np', 80, 'nodePort')
  t.equal(n.address, '127.0.0.1')
  t.equal(await fetchAll(n.address, n.port), 'a')
})

t.test('nodePort allocation: in range, deterministic, stable, independent of order', async (t) => {
  const raw = ['alpha', 'beta', 'gamma', 'delta'].map((n) => service(n, { type: 'NodePort', ports: [{ port: 80 }] }))
  const objs = parse(raw).objects
  const ports = (tb: Table): Record<string, number> => Object.fromEntries([...tb.services.values()].map((s) => [s.name, s.ports[0]?.nodePort ?? 0]))
  const t1 = new Table()
  t1.write(objs, [], 'a')
  const t2 = new Table()
  t2.write([...objs].reverse(), [], 'b')
  t.same(ports(t1), ports(t2), 'same ports whatever the order (and on every restart)')
  for (const n of Object.values(ports(t1))) t.ok(n >= 30000 && n <= 32767, `${n} in 30000-32767`)
  t.equal(new Set(Object.values(ports(t1))).size, 4, 'all distinct')

  // Re-applying without nodePort (the manifest never had one) keeps the allocation.
  const before = ports(t1)
  t1.write(parse([service('alpha', { type: 'NodePort', ports: [{ port: 80 }], sessionAffinity: 'ClientIP' })]).objects, [], 'c')
  t.same(ports(t1), before, 'kept across an update')
  t1.replaceAll(objs, 'd')
  t.same(ports(t1), before, 'kept across a reload of the same file')

  // --service-node-port-range
  const t3 = new Table({ serviceNodePortRange: '40000-40003' })
  t3.write(objs, [], 'e')
  t.same(Object.values(ports(t3)).sort(), [40000, 40001, 40002, 40003])
  t.throws(() => new Table({ serviceNodePortRange: '40000-40003' }).write(parse([...raw, service('eps', { type: 'NodePort', ports: [{ port: 80 }] })]).objects, [], 'f'),
    { code: 'SVCPROXY_INVALID' }, 'range exhausted')
})

t.test('nodePort: an explicit claim wins over an allocation in the same batch', async (t) => {
  const auto = parse([service('auto', { type: 'NodePort', ports: [{ port: 80 }] })]).objects
  const probe = new Table()
  probe.write(auto, [], 'p')
  const hashed = probe.services.get('default/auto')?.ports[0]?.nodePort ?? 0
  const tb = new Table()
  // The allocation comes first in the batch and would hash to `hashed`: the explicit claim wins.
  tb.write(parse([service('auto', { type: 'NodePort', ports: [{ port: 80 }] }), service('fixed', { type: 'NodePort', ports: [{ port: 80, nodePort: hashed }] })]).objects, [], 'x')
  t.equal(tb.services.get('default/fixed')?.ports[0]?.nodePort, hashed)
  t.not(tb.services.get('default/auto')?.ports[0]?.nodePort, hashed)
})

t.test('nodePort conflicts are validation errors; the table is unchanged', async (t) => {
  const p = testProxy(t)
  await p.apply(service('one', { type: 'NodePort', clusterIP: '127.51.0.3', ports: [{ port: 80, nodePort: 30100 }] }))
  const rev = p.table.revision
  const err = await p.apply(service('two', { type: 'NodePort', clusterIP: '127.51.0.4', ports: [{ port: 80, nodePort: 30100 }] })).then(() => null, (e: unknown) => e)
  t.same(validationIssues(err), [{ path: 'spec.ports[0].nodePort', message: 'expected an unused node port; 30100 is already allocated to Service default/one' }])
  t.equal((err as ValidationError).code, 'SVCPROXY_INVALID')
  t.equal(p.table.revision, rev)
  t.notOk(p.table.services.has('default/two'))

  // One allocator for both protocols, as the API server: UDP 30100 is taken too.
  const udp = await p.apply(service('three', { type: 'NodePort', clusterIP: '127.51.0.5', ports: [{ port: 53, protocol: 'UDP', nodePort: 30100 }] })).then(() => null, (e: unknown) => e)
  t.equal(validationIssues(udp)[0]?.path, 'spec.ports[0].nodePort')

  // Within one service a number may serve TCP and UDP, not the same protocol twice.
  await p.apply(service('dns', { type: 'NodePort', clusterIP: '127.51.0.6', ports: [{ name: 'u', port: 53, protocol: 'UDP', nodePort: 30053 }, { name: 't', port: 53, nodePort: 30053 }] }))
  t.same(p.table.services.get('default/dns')?.ports.map((x) => x.nodePort), [30053, 30053])
  const dup = await p.apply(service('dup', { type: 'NodePort', clusterIP: '127.51.0.7', ports: [{ name: 'a', port: 80, nodePort: 30200 }, { name: 'b', port: 81, nodePort: 30200 }] })).then(() => null, (e: unknown) => e)
  t.same(validationIssues(dup), [{ path: 'spec.ports[1].nodePort', message: 'expected each node port once per protocol, got TCP/30200 a second time' }])

  // Out of range.
  const out = await p.apply(service('far', { type: 'NodePort', clusterIP: '127.51.0.8', ports: [{ port: 80, nodePort: 8080 }] })).then(() => null, (e: unknown) => e)
  t.match(validationIssues(out)[0]?.message, /node port range 30000-32767/)

  // Deleting the owner frees the port.
  await p.delete('service default/one')
  await p.apply(service('two', { type: 'NodePort', clusterIP: '127.51.0.4', ports: [{ port: 80, nodePort: 30100 }] }))
  t.equal(p.table.services.get('default/two')?.ports[0]?.nodePort, 30100)
})

t.test('LoadBalancer implies NodePort unless allocateLoadBalancerNodePorts is false', async (t) => {
  const tb = new Table()
  tb.write(parse([
    service('lb', { type: 'LoadBalancer', ports: [{ port: 80 }] }),
    service('lb-off', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ port: 80 }] }),
    service('lb-off-set', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ port: 80, nodePort: 31000 }] }),
    service('cip', { ports: [{ port: 80 }] }),
  ]).objects, [], 't')
  const np = (n: string): number => tb.services.get(`default/${n}`)?.ports[0]?.nodePort ?? -1
  t.ok(np('lb') >= 30000, 'allocated')
  t.equal(np('lb-off'), 0, 'not allocated')
  t.equal(np('lb-off-set'), 31000, 'an explicit nodePort is still honoured')
  t.equal(np('cip'), 0)
})

// ---------------------------------------------------------------------------------------------
// LoadBalancer and externalIPs

t.test('LoadBalancer listens at port on every externalIP and status.loadBalancer.ingress IP', async (t) => {
  const a = await named(t, 'a', '127.0.125.1')
  const p = testProxy(t, { nodePortAddresses: ['127.0.0.1/32'] })
  await p.apply([
    service('lb', { type: 'LoadBalancer', clusterIP: '127.51.0.10', externalIPs: ['127.0.131.1', '127.0.131.2'], selector: { app: 'lb' }, ports: [{ port: 80, targetPort: 'http' }] },
      { status: { loadBalancer: { ingress: [{ ip: '127.0.131.3' }, { hostname: 'lb.example.com' }, { ip: '127.0.131.4' }] } } }),
    pod('lb-1', '127.0.125.1', { app: 'lb' }, { http: a.port }),
  ])
  const fes = p.status()[0]?.frontends ?? []
  t.same(fes.map((f) => `${f.kind} ${f.address}:${f.port} ${f.state}`).sort(), [
    'clusterIP 127.51.0.10:80 listening',
    'externalIP 127.0.131.1:80 listening',
    'externalIP 127.0.131.2:80 listening',
    'loadBalancer 127.0.131.3:80 listening',
    'loadBalancer 127.0.131.4:80 listening',
    `nodePort 127.0.0.1:${p.table.services.get('default/lb')?.ports[0]?.nodePort ?? 0} listening`,
  ])
  for (const f of fes) t.equal(await fetchAll(f.address, f.boundPort), 'a', `${f.kind} ${f.address} serves`)
})

t.test('loadBalancerSourceRanges: only those clients reach the load-balancer addresses, TCP and UDP', async (t) => {
  const a = await named(t, 'a', '127.0.125.8')
  const u = await udpServer(t, 'u', '127.0.125.8')
  const p = testProxy(t)
  const objects = (ranges: Raw): Raw[] => [
    service('fw', {
      type: 'LoadBalancer', clusterIP: '127.51.0.30', allocateLoadBalancerNodePorts: false, selector: { app: 'fw' }, ...ranges,
      ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' }],
    }, { status: { loadBalancer: { ingress: [{ ip: '127.0.131.30' }] } } }),
    { ...pod('fw-1', '127.0.125.8', { app: 'fw' }, {}), spec: { nodeName: 'node-a', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: a.port }, { name: 'dns', containerPort: u.port, protocol: 'UDP' }] }] } },
  ]
  await p.apply(objects({ loadBalancerSourceRanges: ['127.0.0.2/32', '2001:db8::/32'] }))
  const lb = p.address('fw', 'http', 'loadBalancer')
  const cluster = p.address('fw', 'http', 'clusterIP')
  t.equal(await fetchFrom(lb.address, lb.port, '127.0.0.2'), 'a', 'a client inside the ranges is served')
  t.equal(await fetchFrom(lb.address, lb.port, '127.0.0.3'), 'ERR:ECONNRESET', 'a client outside is reset at once')
  t.equal(await fetchFrom(cluster.address, cluster.port, '127.0.0.3'), 'a', 'the clusterIP is not filtered (as kube-proxy)')
  const dns = p.address('fw', 'dns', 'loadBalancer')
  const ask = async (from: string): Promise<string> => (await (await udpClient(t, from)).request('q', dns.port, dns.address, 1, 300))?.data.toString() ?? 'none'
  t.equal(await ask('127.0.0.2'), 'u:q')
  t.equal(await ask('127.0.0.3'), 'none', 'UDP from outside is dropped')
  const rts = [...p.dataplane.runtimes.values()]
  t.equal(rts.reduce((n, rt) => n + rt.sourceRangeDenied, 0), 2, 'each refusal is counted')

  // A change of the ranges applies to the listener already bound; the cloud annotation is
  // honoured when the field is empty.
  await p.apply(objects({ loadBalancerSourceRanges: [] }).map((o) => o.kind === 'Service' ? { ...o, metadata: { name: 'fw', namespace: 'default', annotations: { 'service.beta.kubernetes.io/load-balancer-source-ranges': '127.0.0.3/32, 10.0.0.0/8' } } } : o))
  t.equal(await fetchFrom(lb.address, lb.port, '127.0.0.3'), 'a', 'now allowed by the annotation')
  t.equal(await fetchFrom(lb.address, lb.port, '127.0.0.2'), 'ERR:ECONNRESET', 'and the old client no longer')
  await p.apply(objects({}))
  t.equal(await fetchFrom(lb.address, lb.port, '127.0.0.9'), 'a', 'no ranges: everyone')

  // Bad input is refused with the path, as the API server would.
  const bad = await p.apply(objects({ loadBalancerSourceRanges: ['127.0.0.0/33', 'nope'] })).then(() => null, (e: unknown) => e)
  t.same(validationIssues(bad).map((i) => i.path), ['spec.loadBalancerSourceRanges[0]', 'spec.loadBalancerSourceRanges[1]'])
  const notLb = await p.apply(service('plain', { clusterIP: '127.51.0.31', loadBalancerSourceRanges: ['10.0.0.0/8'], ports: [{ port: 80 }] })).then(() => null, (e: unknown) => e)
  t.match(validationIssues(notLb)[0], { path: 'spec.loadBalancerSourceRanges', message: /may only be used when type is LoadBalancer/ })
})

t.test('healthCheckNodePort: 200 with the local endpoint count while this node has one, 503 without', async (t) => {
  const a = await named(t, 'a', '127.0.125.9')
  const p = testProxy(t, { hostname: 'node-a', nodePortAddresses: ['127.0.0.1/32'] })
  const objects = (node: string, hc: number): Raw[] => [
    service('hc', { type: 'LoadBalancer', clusterIP: '127.51.0.32', externalTrafficPolicy: 'Local', healthCheckNodePort: hc, selector: { app: 'hc' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'dns', port: 53, protocol: 'UDP', targetPort: 'dns' }] }),
    pod('hc-1', '127.0.125.9', { app: 'hc' }, { http: a.port, dns: 5353 }, { nodeName: node }),
  ]
  const probe = async (): Promise<{ status: number, weight: string, body: unknown }> => {
    const h = p.address('hc', 'http', 'healthCheck')
    const res = await fetch(`http://${h.address}:${h.port}/healthz`)
    return { status: res.status, weight: res.headers.get('x-load-balancing-endpoint-weight') ?? '', body: await res.json() }
  }
  await p.apply(objects('node-a', 31990))
  t.same(await probe(), { status: 200, weight: '1', body: { service: { namespace: 'default', name: 'hc' }, localEndpoints: 1, serviceProxyHealthy: true } })
  t.same(p.status().flatMap((s) => s.frontends).filter((f) => f.kind === 'healthCheck').map((f) => `${f.protocol} ${f.address}:${f.port}`), ['TCP 127.0.0.1:31990'], 'one HTTP listener per node address, whatever the service\'s protocols')
  await p.apply(objects('node-b', 31990))
  t.same(await probe(), { status: 503, weight: '0', body: { service: { namespace: 'default', name: 'hc' }, localEndpoints: 0, serviceProxyHealthy: true } }, 'the endpoint moved to another node')

  // As the API server: only LoadBalancer + Local, in the node port range, nobody else's port.
  const wrongType = await p.apply(service('hc2', { type: 'NodePort', clusterIP: '127.51.0.33', healthCheckNodePort: 31991, ports: [{ port: 80 }] })).then(() => null, (e: unknown) => e)
  t.match(validationIssues(wrongType)[0], { path: 'spec.healthCheckNodePort', message: /LoadBalancer and externalTrafficPolicy is Local/ })
  const taken = await p.apply(service('hc3', { type: 'NodePort', clusterIP: '127.51.0.34', ports: [{ port: 80, nodePort: 31990 }] })).then(() => null, (e: unknown) => e)
  t.match(validationIssues(taken)[0], { path: 'spec.ports[0].nodePort', message: /already allocated to Service default\/hc/ })
  const range = await p.apply(objects('node-a', 80)).then(() => null, (e: unknown) => e)
  t.match(validationIssues(range)[0], { path: 'spec.healthCheckNodePort', message: /node port range/ })
})

t.test('externalIPs work on a ClusterIP service; ingress IPs only on a LoadBalancer', async (t) => {
  const a = await named(t, 'a', '127.0.125.2')
  const p = testProxy(t)
  await p.apply([
    service('ext', { clusterIP: '127.51.0.11', externalIPs: ['127.0.131.5'], selector: { app: 'ext' }, ports: [{ port: 80, targetPort: 'http' }] },
      { status: { loadBalancer: { ingress: [{ ip: '127.0.131.6' }] } } }),
    pod('ext-1', '127.0.125.2', { app: 'ext' }, { http: a.port }),
  ])
  const x = p.address('ext', 80, 'externalIP')
  t.equal(await fetchAll(x.address, x.port), 'a')
  t.same(p.status()[0]?.frontends.map((f) => f.kind).sort(), ['clusterIP', 'externalIP'], 'no loadBalancer and no nodePort frontend')
})

// ---------------------------------------------------------------------------------------------
// Session affinity (TCP)

/** A ClientIP service over three endpoints on 127.0.126.1-3, answering a/b/c. */
async function affinityService (t: Tap, p: ServiceProxy, spec: Raw = {}): Promise<{ addr: { address: string, port: number }, ports: number[], objects: (s?: Raw) => Raw[] }> {
  const servers = await Promise.all(['a', 'b', 'c'].map((n, i) => named(t, n, `127.0.126.${i + 1}`)))
  const ports = servers.map((s) => s.port)
  const objects = (s: Raw = spec): Raw[] => [
    service('sticky', { clusterIP: '127.51.0.20', selector: { app: 'sticky' }, sessionAffinity: 'ClientIP', ports: [{ port: 80, targetPort: 'http' }], ...s }),
    ...ports.map((port, i) => pod(`sticky-${i}`, `127.0.126.${i + 1}`, { app: 'sticky' }, { http: port })),
  ]
  await p.apply(objects())
  return { addr: p.address('sticky', 80), ports, objects }
}

t.test('affinity: each client IP keeps its endpoint while the TTL runs, refreshed on use', async (t) => {
  const clock = fakeClock(t)
  const p = testProxy(t)
  const { addr } = await affinityService(t, p, { sessionAffinityConfig: { clientIP: { timeoutSeconds: 100 } } })
  const from = (c: string): Promise<string> => fetchFrom(addr.address, addr.port, c)
  t.equal(await from('127.0.0.1'), 'a', 'first client: first endpoint')
  t.equal(await from('127.0.0.2'), 'b', 'second client: next endpoint')
  for (let i = 0; i < 3; i++) {
    t.equal(await from('127.0.0.1'), 'a')
    t.equal(await from('127.0.0.2'), 'b')
  }
  // 3 x 60 s > the 100 s TTL, but every use restarts it.
  for (let i = 0; i < 3; i++) {
    clock.advance(60)
    t.equal(await from('127.0.0.1'), 'a', `still pinned after ${(i + 1) * 60} s of use`)
  }
  clock.advance(101)
  t.equal(await from('127.0.0.1'), 'c', 'expired: the round-robin moves on')
  t.equal(await from('127.0.0.1'), 'c', 'and pins again')
})

t.test('affinity: default TTL is 10800 s; timeoutSeconds over 86400 is rejected', async (t) => {
  const clock = fakeClock(t)
  const p = testProxy(t)
  const { addr } = await affinityService(t, p)
  t.equal(await fetchAll(addr.address, addr.port), 'a')
  clock.advance(10799)
  t.equal(await fetchAll(addr.address, addr.port), 'a', 'inside 3 h')
  clock.advance(10801)
  t.equal(await fetchAll(addr.address, addr.port), 'b', 'after 3 h idle')
  const err = await p.apply(service('bad', { clusterIP: '127.51.0.21', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } }, ports: [{ port: 80 }] })).then(() => null, (e: unknown) => e)
  t.same(validationIssues(err).map((i) => i.path), ['spec.sessionAffinityConfig.clientIP.timeoutSeconds'])
})

t.test('affinity: changing only timeoutSeconds takes effect (kubernetes#107398)', async (t) => {
  const clock = fakeClock(t)
  const p = testProxy(t)
  const { addr, objects } = await affinityService(t, p, { sessionAffinityConfig: { clientIP: { timeoutSeconds: 10800 } } })
  t.equal(await fetchAll(addr.address, addr.port), 'a')
  await p.apply(objects({ sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }))
  t.equal(p.address('sticky', 80).port, addr.port, 'same listener: only the timeout changed')
  t.equal(await fetchAll(addr.address, addr.port), 'a', 'pin kept')
  clock.advance(61)
  t.equal(await fetchAll(addr.address, addr.port), 'b', 'the new 60 s TTL applies')
  // Turning affinity off returns to plain round-robin.
  await p.apply(objects({ sessionAffinity: 'None' }))
  t.same(uniq(await collect(3, addr.address, addr.port)), ['a', 'b', 'c'])
})

t.test('affinity: a failed dial drops the pin and moves on', async (t) => {
  const p = testProxy(t)
  const failures: DialFailedEvent[] = []
  p.on('dialFailed', (e) => failures.push(e))
  const servers = await Promise.all(['a', 'b'].map((n, i) => named(t, n, `127.0.127.${i + 1}`)))
  await p.apply([
    service('sticky', { clusterIP: '127.51.0.22', selector: { app: 's' }, sessionAffinity: 'ClientIP', ports: [{ port: 80, targetPort: 'http' }] }),
    ...servers.map((s, i) => pod(`s-${i}`, `127.0.127.${i + 1}`, { app: 's' }, { http: s.port })),
  ])
  const addr = p.address('sticky', 80)
  t.equal(await fetchAll(addr.address, addr.port), 'a')
  servers[0]?.server.close()
  await once(servers[0]?.server as Server, 'close')
  t.equal(await fetchAll(addr.address, addr.port), 'b', 'moved to the next endpoint')
  t.equal(failures.length, 1)
  for (let i = 0; i < 3; i++) t.equal(await fetchAll(addr.address, addr.port), 'b')
  t.equal(failures.length, 1, 'pinned to the new endpoint: the dead one is not dialled again')
})

t.test('affinity: an endpoint leaving the set drops its pins', async (t) => {
  const p = testProxy(t)
  const { addr, objects } = await affinityService(t, p)
  t.equal(await fetchAll(addr.address, addr.port), 'a')
  const all = objects()
  await p.delete('pod default/sticky-0')
  t.equal(await fetchAll(addr.address, addr.port), 'b', 're-pinned')
  await p.apply(all)
  t.equal(await fetchAll(addr.address, addr.port), 'b', 'the returning endpoint does not take the client back')
})

t.test('affinity over UDP: every session of a client IP goes to its endpoint while the TTL runs', async (t) => {
  const clock = fakeClock(t)
  const servers = await Promise.all(['a', 'b', 'c'].map((n, i) => udpServer(t, n, `127.0.127.${i + 11}`)))
  const p = testProxy(t)
  const objects = (timeoutSeconds: number): Raw[] => [
    service('dns', { clusterIP: '127.51.0.23', selector: { app: 'dns' }, sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds } }, ports: [{ port: 53, protocol: 'UDP', targetPort: 'dns' }] }),
    ...servers.map((srv, i) => ({ ...pod(`dns-${i}`, `127.0.127.${i + 11}`, { app: 'dns' }, {}), spec: { nodeName: 'node-a', containers: [{ name: 'c', ports: [{ name: 'dns', containerPort: srv.port, protocol: 'UDP' }] }] } })),
  ]
  await p.apply(objects(100))
  const addr = p.address('dns', 53)
  // A new client socket is a new session (new source port): only affinity keeps the endpoint.
  const ask = async (from: string): Promise<string> => (await (await udpClient(t, from)).request('q', addr.port, addr.address))?.data.toString() ?? 'none'
  t.equal(await ask('127.0.0.1'), 'a:q')
  t.equal(await ask('127.0.0.2'), 'b:q', 'another client IP: the next endpoint')
  t.same([await ask('127.0.0.1'), await ask('127.0.0.2'), await ask('127.0.0.1')], ['a:q', 'b:q', 'a:q'], 'pinned per client IP')
  clock.advance(101)
  t.equal(await ask('127.0.0.1'), 'c:q', 'expired: moves on')
  // Changing only timeoutSeconds applies to UDP pins too.
  await p.apply(objects(10))
  t.equal(await ask('127.0.0.1'), 'c:q')
  clock.advance(11)
  t.not(await ask('127.0.0.1'), 'c:q', 'the new 10 s TTL applies')
})

// ---------------------------------------------------------------------------------------------
// Traffic policies

/** Endpoints on this node (node-a) and on another (node-b), behind a NodePort with an externalIP. */
async function policyService (t: Tap, p: ServiceProxy, spec: Raw): Promise<{ objects: (extra?: Raw[]) => Raw[], localPort: number }> {
  const local = await named(t, 'local', '127.0.128.1')
  const remote = await named(t, 'remote', '127.0.128.2')
  const objects = (extra: Raw[] = []): Raw[] => [
    service('pol', { type: 'NodePort', clusterIP: '127.51.0.30', externalIPs: ['127.0.132.1'], selector: { app: 'pol' }, ports: [{ port: 80, targetPort: 'http' }], ...spec }),
    ...extra,
    pod('pol-remote', '127.0.128.2', { app: 'pol' }, { http: remote.port }, { nodeName: 'node-b' }),
  ]
  await p.apply([...objects(), pod('pol-local', '127.0.128.1', { app: 'pol' }, { http: local.port }, { nodeName: 'node-a' })])
  return { objects, localPort: local.port }
}

t.test('externalTrafficPolicy Local: node port and external IPs reach only this node\'s endpoints', async (t) => {
  const p = testProxy(t, { hostname: 'node-a', nodePortAddresses: ['127.0.0.1/32'] })
  await policyService(t, p, { externalTrafficPolicy: 'Local' })
  const np = p.address('pol', 80, 'nodePort')
  const ext = p.address('pol', 80, 'externalIP')
  const cip = p.address('pol', 80)
  t.same(uniq(await collect(4, np.address, np.port)), ['local'])
  t.same(uniq(await collect(4, ext.address, ext.port)), ['local'])
  t.same(uniq(await collect(4, cip.address, cip.port)), ['local', 'remote'], 'clusterIP traffic is not affected')

  await p.delete('pod default/pol-local')
  t.equal(await fetchAll(np.address, np.port), 'ERR:ECONNRESET', 'no local endpoint: refused, not sent to node-b')
  t.equal(await fetchAll(ext.address, ext.port), 'ERR:ECONNRESET')
  t.equal(await fetchAll(cip.address, cip.port), 'remote')
})

t.test('externalTrafficPolicy Local: the node name comes from the hostname option', async (t) => {
  const p = testProxy(t, { hostname: 'node-b', nodePortAddresses: ['127.0.0.1/32'] })
  await policyService(t, p, { externalTrafficPolicy: 'Local' })
  const np = p.address('pol', 80, 'nodePort')
  t.same(uniq(await collect(4, np.address, np.port)), ['remote'])
})

t.test('internalTrafficPolicy Local: clusterIP traffic reaches only this node\'s endpoints', async (t) => {
  const p = testProxy(t, { hostname: 'node-a', nodePortAddresses: ['127.0.0.1/32'] })
  await policyService(t, p, { internalTrafficPolicy: 'Local' })
  const cip = p.address('pol', 80)
  const np = p.address('pol', 80, 'nodePort')
  t.same(uniq(await collect(4, cip.address, cip.port)), ['local'])
  t.same(uniq(await collect(4, np.address, np.port)), ['local', 'remote'], 'external traffic policy is still Cluster')
  await p.delete('pod default/pol-local')
  t.equal(await fetchAll(cip.address, cip.port), 'ERR:ECONNRESET')
})

t.test('traffic policy Local falls back to this node\'s serving-terminating endpoints (KEP-1669, per node)', async (t) => {
  const p = testProxy(t, { hostname: 'node-a', nodePortAddresses: ['127.0.0.1/32'] })
  const { objects, localPort } = await policyService(t, p, { externalTrafficPolicy: 'Local' })
  const np = p.address('pol', 80, 'nodePort')
  const cip = p.address('pol', 80)
  // The local pod is shutting down but still passes its readiness probe: serving, terminating.
  await p.apply(objects([pod('pol-local', '127.0.128.1', { app: 'pol' }, { http: localPort }, { nodeName: 'node-a', terminating: true })]))
  t.same(uniq(await collect(4, np.address, np.port)), ['local'], 'node port: the local terminating endpoint, not node-b\'s ready one')
  t.same(uniq(await collect(4, cip.address, cip.port)), ['remote'], 'cluster traffic: ready endpoints only')
  // Not ready and not serving: never used.
  await p.apply(objects([pod('pol-local', '127.0.128.1', { app: 'pol' }, { http: localPort }, { nodeName: 'node-a', terminating: true, ready: false })]))
  t.equal(await fetchAll(np.address, np.port), 'ERR:ECONNRESET')
})

// ---------------------------------------------------------------------------------------------
// EndpointSlice conditions, publishNotReadyAddresses

t.test('EndpointSlice conditions: ready serve; serving-terminating only when none is ready; never the others', async (t) => {
  const names = ['ready', 'term', 'notready', 'gone'] as const
  const s = Object.fromEntries(await Promise.all(names.map(async (n, i) => [n, await named(t, n, `127.0.129.${i + 1}`)] as const)))
  const p = testProxy(t)
  const svc = service('sl', { clusterIP: '127.51.0.40', ports: [{ port: 80 }] })
  const slices = {
    ready: slice('sl', 'sl-ready', { ip: '127.0.129.1' }, s.ready?.port ?? 0),
    term: slice('sl', 'sl-term', { ip: '127.0.129.2', ready: false, serving: true, terminating: true }, s.term?.port ?? 0),
    notready: slice('sl', 'sl-notready', { ip: '127.0.129.3', ready: false }, s.notready?.port ?? 0),
    gone: slice('sl', 'sl-gone', { ip: '127.0.129.4', ready: false, serving: false, terminating: true }, s.gone?.port ?? 0),
  }
  await p.apply([svc, ...Object.values(slices)])
  const a = p.address('sl', 80)
  t.same(uniq(await collect(4, a.address, a.port)), ['ready'])
  await p.delete('endpointslice default/sl-ready')
  t.same(uniq(await collect(4, a.address, a.port)), ['term'], 'no ready endpoint: serving-and-terminating ones serve')
  t.equal(p.status()[0]?.endpoints[0]?.ready, false, 'reported as not ready')
  await p.delete('endpointslice default/sl-term')
  t.equal(await fetchAll(a.address, a.port), 'ERR:ECONNRESET', 'not-ready and non-serving endpoints never serve')
  await p.apply(slices.ready)
  t.same(uniq(await collect(4, a.address, a.port)), ['ready'])

  // publishNotReadyAddresses: not-ready addresses serve too.
  await p.apply(service('sl', { clusterIP: '127.51.0.40', ports: [{ port: 80 }], publishNotReadyAddresses: true }))
  t.same(uniq(await collect(6, a.address, a.port)), ['gone', 'notready', 'ready'])
})

t.test('publishNotReadyAddresses with pods and with v1 Endpoints', async (t) => {
  const r = await named(t, 'ready', '127.0.129.11')
  const n = await named(t, 'notready', '127.0.129.12')
  const d = await named(t, 'deleting', '127.0.129.13')
  const p = testProxy(t)
  const objs = (publish: boolean): Raw[] => [
    service('pods', { clusterIP: '127.51.0.41', selector: { app: 'pn' }, publishNotReadyAddresses: publish, ports: [{ port: 80, targetPort: 'http' }] }),
    pod('pn-r', '127.0.129.11', { app: 'pn' }, { http: r.port }),
    pod('pn-n', '127.0.129.12', { app: 'pn' }, { http: n.port }, { ready: false }),
    // As the EndpointSlice controller: with publishNotReadyAddresses even a terminating pod is ready.
    pod('pn-d', '127.0.129.13', { app: 'pn' }, { http: d.port }, { ready: false, terminating: true }),
    service('eps', { clusterIP: '127.51.0.42', publishNotReadyAddresses: publish, ports: [{ port: 80 }] }),
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'eps', namespace: 'default' },
      subsets: [
        { addresses: [{ ip: '127.0.129.11' }], ports: [{ port: r.port }] },
        { notReadyAddresses: [{ ip: '127.0.129.12' }], ports: [{ port: n.port }] },
      ],
    },
  ]
  await p.apply(objs(false))
  const pa = p.address('pods', 80)
  const ea = p.address('eps', 80)
  t.same(uniq(await collect(4, pa.address, pa.port)), ['ready'])
  t.same(uniq(await collect(4, ea.address, ea.port)), ['ready'])
  await p.apply(objs(true))
  t.same(uniq(await collect(6, pa.address, pa.port)), ['deleting', 'notready', 'ready'])
  t.same(uniq(await collect(4, ea.address, ea.port)), ['notready', 'ready'])
})

// ---------------------------------------------------------------------------------------------
// Multi-port services, named targetPorts

t.test('multi-port service: named targetPorts resolve to different numbers on different pods', async (t) => {
  const servers: Record<string, number> = {}
  for (const podName of ['p1', 'p2']) {
    for (const portName of ['web', 'mgmt']) {
      const ip = podName === 'p1' ? '127.0.129.21' : '127.0.129.22'
      servers[`${podName}-${portName}`] = (await named(t, `${podName}-${portName}`, ip)).port
    }
  }
  const p3 = (await named(t, 'p3-web', '127.0.129.23')).port
  const p = testProxy(t)
  await p.apply([
    service('multi', { clusterIP: '127.51.0.50', selector: { app: 'multi' }, ports: [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'admin', port: 81, targetPort: 'mgmt' }] }),
    pod('p1', '127.0.129.21', { app: 'multi' }, { web: servers['p1-web'] ?? 0, mgmt: servers['p1-mgmt'] ?? 0 }),
    pod('p2', '127.0.129.22', { app: 'multi' }, { web: servers['p2-web'] ?? 0, mgmt: servers['p2-mgmt'] ?? 0 }),
    // A pod without the named port is not an endpoint of that service port.
    pod('p3', '127.0.129.23', { app: 'multi' }, { web: p3 }),
  ])
  t.not(servers['p1-web'], servers['p2-web'], 'the same name, different numbers')
  const http = p.address('multi', 'http')
  const admin = p.address('multi', 'admin')
  t.equal(http.port !== admin.port || http.address !== admin.address, true)
  t.same(uniq(await collect(6, http.address, http.port)), ['p1-web', 'p2-web', 'p3-web'])
  t.same(uniq(await collect(4, admin.address, admin.port)), ['p1-mgmt', 'p2-mgmt'])
  t.same(p.status().find((s) => s.port === 'admin')?.endpoints.map((e) => e.endpoint), [`127.0.129.21:${servers['p1-mgmt'] ?? 0}`, `127.0.129.22:${servers['p2-mgmt'] ?? 0}`])
  t.same(p.status().find((s) => s.port === 'http')?.endpoints.length, 3, 'p3 has a web port')
})

// ---------------------------------------------------------------------------------------------
// Self-loops (issue 18): an endpoint at the service's own address and port

t.test('an endpoint at the service\'s own clusterIP:port or node address:nodePort is never dialled, and counted', async (t) => {
  const a = await named(t, 'a', '127.0.58.1')
  // Real ports (a loop needs the listener at the port the endpoint names); the connection limit
  // bounds the nested connections a loop would make, so a regression fails instead of exhausting descriptors.
  const p = testProxy(t, { ephemeralPorts: false, bindAddress: '127.0.0.1', maxConnections: 20 })
  const accepted: number[] = []
  p.on('accept', (e) => { accepted.push(e.id) })
  // The Service first, its Endpoints in a later write (as a watch delivers them): validation
  // cannot see both at once, so the data plane must refuse the loop.
  await p.apply(service('sl', { type: 'NodePort', clusterIP: '127.58.0.1', ports: [{ port: 18581, nodePort: 31858 }] }))
  const ep = (ips: Array<[string, number]>): Raw => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'sl', namespace: 'default' }, subsets: ips.map(([ip, port]) => ({ addresses: [{ ip }], ports: [{ port }] })) })
  await p.apply(ep([['127.58.0.1', 18581], ['127.0.0.1', 31858], ['127.0.58.1', a.port]]))
  const rt = p.dataplane.runtimes.get('default/sl:18581')
  t.equal(rt?.selfLoopEndpoints, 2, 'two endpoints left out: clusterIP:port and a node address at the nodePort')
  t.same(p.status()[0]?.endpoints.map((e) => e.endpoint), [`127.0.58.1:${a.port}`], 'only the real endpoint is in the set')

  for (const [host, port] of [['127.58.0.1', 18581], ['127.0.0.1', 31858]] as const) {
    t.same(await collect(4, host, port), ['a', 'a', 'a', 'a'], `every connection at ${host}:${port} reaches the pod`)
  }
  t.equal(accepted.length, 8, 'one accept per client connection: none made by the proxy to itself')
  t.equal(a.hits(), 8)
  t.equal(rt?.dialFailures, 0)

  // Only the looping endpoint: the service has no endpoint (reset at once), not 20 nested connections.
  await p.apply(ep([['127.58.0.1', 18581]]))
  t.equal(await fetchAll('127.58.0.1', 18581), 'ERR:ECONNRESET', 'no endpoint: the client is reset')
  t.equal(rt?.noEndpoints, 1, 'counted as no endpoints')
  t.equal(p.limits.rejected, 0, 'the connection limit was never reached')
  t.equal(accepted.length, 9)
  t.equal(rt?.selfLoopEndpoints, 1)

  // The metric families carry it (once every connection is closed on the proxy's side too).
  t.ok(await until(() => p.dataplane.openCount() === 0))
  const { renderMetrics } = await import('../lib/admin/collect.js')
  const { ProcessStats } = await import('../lib/admin/process-stats.js')
  const stats = new ProcessStats()
  t.teardown(() => stats.close())
  const text = await renderMetrics({ proxy: p, health: () => ({ kind: 'api', synced: true, stale: false, reason: '', lastSyncedAt: 0, revision: 0 }), process: stats })
  t.match(text, /\nsvcproxy_self_loop_endpoints\{namespace="default",service="sl",port="18581"\} 1\n/)
  t.match(text, /\nsvcproxy_dial_duration_seconds_count\{namespace="default",service="sl",port="18581"\} 8\n/, 'one dial observation per connection that reached an endpoint')
  t.match(text, /\nsvcproxy_connection_duration_seconds_count\{namespace="default",service="sl",port="18581"\} 9\n/, 'one duration observation per connection')
})
