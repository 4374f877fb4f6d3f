import t from 'tap'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { FileError, ValidationError, type ValidationIssue } from '../lib/errors.js'
import {
  type EndpointSlice, type Endpoints, type KubeObject, type Pod, type Service,
  ipFamily, isIP, isIPv4, isIPv6, parseDocument, parseObjects, readDocumentFile
} from '../lib/model/index.js'
import { addressClass } from '../lib/model/ip.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const fixture = join(root, 'test/fixtures/kubectl-all.json')

/** The issues a call is rejected with; fails the test if it is not a ValidationError. */
function issuesOf (fn: () => unknown): ValidationIssue[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ValidationError) return err.issues
    throw err
  }
  throw new Error('expected a ValidationError, got success')
}

function svc (spec: Record<string, unknown>, metadata: Record<string, unknown> = { name: 'web' }): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata, spec }
}

function one<K extends KubeObject['kind']> (objects: KubeObject[], kind: K, name: string): Extract<KubeObject, { kind: K }> {
  const o = objects.find((x) => x.kind === kind && x.name === name)
  if (o === undefined) throw new Error(`no ${kind} ${name}`)
  return o as Extract<KubeObject, { kind: K }>
}

const ref = 'Service default/web'

t.test('ip syntax', async (t) => {
  for (const s of ['0.0.0.0', '10.96.0.1', '255.255.255.255', '192.168.66.109']) t.ok(isIPv4(s), s)
  for (const s of ['010.0.0.1', '256.1.1.1', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '1.2.3.4 ', '', 'a.b.c.d', '1..2.3']) t.notOk(isIPv4(s), s)
  for (const s of ['::', '::1', 'fe80::1', '2001:db8::8a2e:370:7334', '1:2:3:4:5:6:7:8', '::ffff:10.0.0.1', '64:ff9b::192.0.2.33', 'FD00::A', '1:2:3:4:5:6::8', '::2:3:4:5:6:7:8']) t.ok(isIPv6(s), s)
  for (const s of ['fe80::1%eth0', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8::', '12345::', ':1::', '1::2:', 'g::1', '::ffff:010.0.0.1', '1.2.3.4', '::1.2.3.4:5']) t.notOk(isIPv6(s), s)
  t.equal(ipFamily('10.0.0.1'), 4)
  t.equal(ipFamily('::1'), 6)
  t.equal(ipFamily('None'), 0)
  t.ok(isIP('::1'))
  t.notOk(isIP('localhost'))
})

t.test('a realistic kubectl get -A -o json List loads unchanged', async (t) => {
  const doc = await readDocumentFile(fixture)
  t.same(doc.warnings, [
    `${fixture}: skipping Deployment kube-system/coredns (svcproxy reads Service, Endpoints, EndpointSlice, Pod)`,
    `${fixture}: skipping ConfigMap kube-system/coredns (svcproxy reads Service, Endpoints, EndpointSlice, Pod)`
  ])
  const count = (k: string): number => doc.objects.filter((o) => o.kind === k).length
  t.same([count('Service'), count('Endpoints'), count('EndpointSlice'), count('Pod')], [3, 2, 2, 4])

  const dns = one(doc.objects, 'Service', 'kube-dns')
  t.equal(dns.namespace, 'kube-system')
  t.equal(dns.uid, 'c1a6cf0a-4d7e-4b8e-8d2f-3c7d1f0e9a11')
  t.equal(dns.clusterIP, '10.96.0.10')
  t.same(dns.ports, [
    { name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 0 },
    { name: 'dns-tcp', protocol: 'TCP', port: 53, targetPort: 53, nodePort: 0 },
    { name: 'metrics', protocol: 'TCP', port: 9153, targetPort: 9153, nodePort: 0 }
  ])
  t.same(dns.selector, { 'k8s-app': 'kube-dns' })
  t.equal(dns.sessionAffinity, 'None')
  t.equal(dns.affinityTimeoutSeconds, 10800)

  const k = one(doc.objects, 'Service', 'kubernetes')
  t.equal(k.selector, null)
  t.same(k.ports, [{ name: 'https', protocol: 'TCP', port: 443, targetPort: 6443, nodePort: 0 }])

  const web = one(doc.objects, 'Service', 'web')
  t.equal(web.type, 'LoadBalancer')
  t.same(web.ports, [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 'http', nodePort: 30080 }])
  t.same(web.loadBalancerIPs, ['172.18.255.200'], 'hostname-only ingress entries are dropped')
  t.equal(web.externalTrafficPolicy, 'Local')
  t.equal(web.internalTrafficPolicy, 'Cluster')
  t.equal(web.sessionAffinity, 'ClientIP')
  t.equal(web.affinityTimeoutSeconds, 600)
  t.equal(web.allocateLoadBalancerNodePorts, true)
  t.match(web.annotations['kubectl.kubernetes.io/last-applied-configuration'], /"name":"web"/)

  const ep = one(doc.objects, 'Endpoints', 'kube-dns')
  t.same(ep.subsets[0]?.addresses, [
    { ip: '10.244.0.2', nodeName: 'kind-control-plane', podName: 'coredns-7db6d8ff4d-4xk2p' },
    { ip: '10.244.0.3', nodeName: 'kind-control-plane', podName: 'coredns-7db6d8ff4d-9qz7m' }
  ])
  t.same(ep.subsets[0]?.notReadyAddresses, [])
  t.same(ep.subsets[0]?.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`), ['dns-tcp:53/TCP', 'dns:53/UDP', 'metrics:9153/TCP'])
  t.same(one(doc.objects, 'Endpoints', 'kubernetes').subsets[0]?.addresses, [{ ip: '172.18.0.2', nodeName: '', podName: '' }])

  const slice = one(doc.objects, 'EndpointSlice', 'kube-dns-8gq5k')
  t.equal(slice.serviceName, 'kube-dns')
  t.equal(slice.addressType, 'IPv4')
  t.same(slice.endpoints[1], {
    addresses: ['10.244.0.3'],
    conditions: { ready: true, serving: true, terminating: false },
    nodeName: 'kind-control-plane',
    podName: 'coredns-7db6d8ff4d-9qz7m'
  })
  t.same(one(doc.objects, 'EndpointSlice', 'kubernetes').endpoints[0]?.conditions, { ready: true, serving: true, terminating: false })

  const coredns = one(doc.objects, 'Pod', 'coredns-7db6d8ff4d-4xk2p')
  t.same({ ip: coredns.podIP, phase: coredns.phase, ready: coredns.ready, terminating: coredns.terminating, node: coredns.nodeName },
    { ip: '10.244.0.2', phase: 'Running', ready: true, terminating: false, node: 'kind-control-plane' })
  t.same(coredns.ports, [
    { name: 'dns', containerPort: 53, protocol: 'UDP' },
    { name: 'dns-tcp', containerPort: 53, protocol: 'TCP' },
    { name: 'metrics', containerPort: 9153, protocol: 'TCP' }
  ])
  const deleting = one(doc.objects, 'Pod', 'web-5d8f7c9b6-abcde')
  t.equal(deleting.terminating, true)
  t.equal(deleting.ready, false)
  const pending = one(doc.objects, 'Pod', 'web-5d8f7c9b6-fghij')
  t.same({ ip: pending.podIP, phase: pending.phase, ready: pending.ready, node: pending.nodeName }, { ip: '', phase: 'Pending', ready: false, node: '' })
  t.same(pending.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }])
})

t.test('examples load', async (t) => {
  const gsw = await readDocumentFile(join(root, 'examples/gsw-k8s-3-service.json'))
  const s = one(gsw.objects, 'Service', 'gsw-k8s-3-service')
  t.same(s.selector, { app: 'gswk8sApp' })
  t.same(s.ports, [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 0 }])
  const pods = gsw.objects.filter((o): o is Pod => o.kind === 'Pod')
  t.same(pods.map((p) => [p.podIP, p.ready, p.phase, p.labels.app, p.ports[0]?.containerPort]), [
    ['127.0.10.1', true, 'Running', 'gswk8sApp', 8080],
    ['127.0.10.2', true, 'Running', 'gswk8sApp', 8080]
  ])

  const httpd = await readDocumentFile(join(root, 'examples/httpd-svc.json'))
  const h = one(httpd.objects, 'Service', 'httpd-svc')
  t.equal(h.namespace, 'kube-system')
  t.same(h.selector, { run: 'httpd' })
  t.same(h.ports, [{ name: '', protocol: 'TCP', port: 8080, targetPort: 80, nodePort: 0 }])
  t.same(httpd.objects.filter((o): o is Pod => o.kind === 'Pod').map((p) => [p.namespace, p.podIP, p.ready]), [
    ['kube-system', '127.0.11.1', true],
    ['kube-system', '127.0.11.2', true]
  ])

  const mysql = await readDocumentFile(join(root, 'examples/mysql.json'))
  t.equal(one(mysql.objects, 'Service', 'mysql').selector, null)
  t.same(one(mysql.objects, 'Endpoints', 'mysql').subsets, [{
    addresses: [{ ip: '192.168.66.109', nodeName: '', podName: '' }],
    notReadyAddresses: [],
    ports: [{ name: '', port: 3306, protocol: 'TCP' }]
  }])
})

t.test('document forms', async (t) => {
  const service = svc({ ports: [{ port: 80 }] })
  const single = parseDocument(JSON.stringify(service), 'a.json')
  t.equal(single.objects.length, 1)
  t.same(single.warnings, [])
  const s = single.objects[0] as Service
  t.same(s.ports, [{ name: '', protocol: 'TCP', port: 80, targetPort: 80, nodePort: 0 }], 'protocol and targetPort default')
  t.equal(s.namespace, 'default')
  t.equal(s.uid, 'default/web')
  t.equal(s.type, 'ClusterIP')
  t.equal(s.clusterIP, '')
  t.equal(s.selector, null)

  const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'x' } }
  const arr = parseDocument(JSON.stringify([service, pod]), 'a.json')
  t.same(arr.objects.map((o) => `${o.kind} ${o.namespace}/${o.name}`), ['Service default/web', 'Pod x/p'])

  const nested = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'List', items: [service] },
      // Typed lists from the API leave kind and apiVersion off their items.
      { apiVersion: 'v1', kind: 'PodList', items: [{ metadata: { name: 'p' } }] },
      { apiVersion: 'v1', kind: 'List', items: [] }
    ]
  }
  t.same(parseDocument(JSON.stringify(nested), 'a.json').objects.map((o) => o.kind), ['Service', 'Pod'])
  t.same(parseDocument('{"apiVersion":"v1","kind":"List","items":[]}', 'a.json'), { objects: [], warnings: [] })
  t.same(parseDocument('\uFEFF[]', 'a.json'), { objects: [], warnings: [] }, 'a byte order mark is allowed')

  t.same(parseObjects([service, pod], '<apply>').objects.map((o) => o.kind), ['Service', 'Pod'])
  t.same(issuesOf(() => parseDocument('42', 'a.json')), [
    { file: 'a.json', object: '', path: '', message: 'expected a Kubernetes object, an array of objects or a List, got 42' }
  ])
})

t.test('JSON syntax errors name the position', async (t) => {
  t.same(issuesOf(() => parseDocument('{\n  "kind": "Service",\n  "metadata": {"name": "web",}\n}', 'bad.json')), [{
    file: 'bad.json',
    object: '',
    path: '',
    message: 'invalid JSON at line 3, column 30 (character 52): expected a property name in double quotes, got "}"'
  }])
  t.match(issuesOf(() => parseDocument('[1, 2', 'bad.json'))[0]?.message, /^invalid JSON at line 1, column 6 \(character 5\): expected ',' or '\]', got the end of the input$/)
  t.match(issuesOf(() => parseDocument('{} {}', 'bad.json'))[0]?.message, /column 4 .*expected the end of the input/)
  t.match(issuesOf(() => parseDocument('', 'bad.json'))[0]?.message, /^invalid JSON at line 1, column 1/)
  const deep = '['.repeat(100000)
  t.match(issuesOf(() => parseDocument(deep, 'bad.json'))[0]?.message, /^invalid JSON/, 'deep nesting is reported, not a stack overflow')
})

t.test('ports', async (t) => {
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80, protocol: 'SCTP' }] })], 'f')), [
    { file: 'f', object: ref, path: 'spec.ports[0].protocol', message: 'SCTP is not supported by svcproxy (expected TCP or UDP)' }
  ])
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80, protocol: 'tcp' }] })], 'f'))[0]?.message, 'expected TCP or UDP, got "tcp"')

  t.same(issuesOf(() => parseObjects([svc({ ports: [{ name: 'http', port: 80 }, { port: 443 }] })], 'f')), [
    { file: 'f', object: ref, path: 'spec.ports[1].name', message: 'expected a port name: every port needs one when a service has more than one port' }
  ])
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ name: 'http', port: 80 }, { name: 'http', port: 443 }] })], 'f')), [
    { file: 'f', object: ref, path: 'spec.ports[1].name', message: 'expected a unique port name, got "http" a second time' }
  ])
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ name: 'a', port: 80 }, { name: 'b', port: 80, protocol: 'TCP' }] })], 'f')), [
    { file: 'f', object: ref, path: 'spec.ports[1]', message: 'expected each port/protocol pair once, got 80/TCP a second time' }
  ])
  t.equal(parseObjects([svc({ ports: [{ name: 'a', port: 53 }, { name: 'b', port: 53, protocol: 'UDP' }] })], 'f').objects.length, 1,
    'the same port number with TCP and UDP is fine')

  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80, targetPort: 'Not_A_Name' }] })], 'f')), [{
    file: 'f',
    object: ref,
    path: 'spec.ports[0].targetPort',
    message: 'expected an integer 1-65535 or a port name (at most 15 lowercase letters, digits and \'-\', with at least one letter), got "Not_A_Name"'
  }])
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80, targetPort: 70000 }] })], 'f'))[0]?.path, 'spec.ports[0].targetPort')
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 'abc' }] })], 'f')), [
    { file: 'f', object: ref, path: 'spec.ports[0].port', message: 'expected an integer 1-65535, got "abc"' }
  ])
  for (const bad of [0, 65536, 1.5, -1, '80', null]) {
    t.equal(issuesOf(() => parseObjects([svc({ ports: [{ port: bad }] })], 'f'))[0]?.path, 'spec.ports[0].port', `port ${String(bad)}`)
  }

  const ok = parseObjects([svc({ ports: [{ name: 'a', port: 80, targetPort: '8080' }, { name: 'b', port: 81, targetPort: 'http' }, { name: 'c', port: 82, targetPort: 0 }] })], 'f')
  t.same((ok.objects[0] as Service).ports.map((p) => p.targetPort), [8080, 'http', 82], 'numeric strings become numbers; 0 defaults to port')

  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80, nodePort: 30080 }] })], 'f')), [{
    file: 'f', object: ref, path: 'spec.ports[0].nodePort', message: 'expected no nodePort for a ClusterIP service (only NodePort and LoadBalancer have them), got 30080'
  }])
  t.same((parseObjects([svc({ type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] })], 'f').objects[0] as Service).ports[0]?.nodePort, 30080)
  t.same(issuesOf(() => parseObjects([svc({ type: 'NodePort', ports: [{ port: 80, nodePort: 'x' }] })], 'f'))[0]?.path, 'spec.ports[0].nodePort')
  t.same(issuesOf(() => parseObjects([svc({ ports: [] })], 'f')), [
    { file: 'f', object: ref, path: 'spec.ports', message: 'expected at least one port for a ClusterIP service, got none' }
  ])
})

t.test('service fields', async (t) => {
  const parse = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}): Service =>
    parseObjects([{ ...svc(spec), ...extra }], 'f').objects[0] as Service

  t.equal(parse({ clusterIP: 'None' }).clusterIP, 'None', 'headless services may have no ports')
  t.equal(parse({ clusterIPs: ['fd00::10'], ports: [{ port: 80 }] }).clusterIP, 'fd00::10')
  t.same(issuesOf(() => parse({ clusterIP: '10.0.0.300', ports: [{ port: 80 }] })), [
    { file: 'f', object: ref, path: 'spec.clusterIP', message: 'expected an IPv4 or IPv6 address, "None" or "", got "10.0.0.300"' }
  ])
  t.same(issuesOf(() => parse({ type: 'NodePort', clusterIP: 'None', ports: [{ port: 80 }] })), [
    { file: 'f', object: ref, path: 'spec.clusterIP', message: 'a headless service (clusterIP "None") cannot be of type NodePort; expected type ClusterIP' }
  ])
  t.same(issuesOf(() => parse({ externalIPs: ['1.2.3.4', 'nope'], ports: [{ port: 80 }] })), [
    { file: 'f', object: ref, path: 'spec.externalIPs[1]', message: 'expected an IPv4 or IPv6 address, got "nope"' }
  ])
  t.same(issuesOf(() => parse({ ports: [{ port: 80 }] }, { status: { loadBalancer: { ingress: [{ ip: 'x' }] } } })), [
    { file: 'f', object: ref, path: 'status.loadBalancer.ingress[0].ip', message: 'expected an IPv4 or IPv6 address, got "x"' }
  ])

  const ext = parse({ type: 'ExternalName', externalName: 'db.example.com.' })
  t.same([ext.type, ext.externalName, ext.ports], ['ExternalName', 'db.example.com.', []])
  t.same(issuesOf(() => parse({ type: 'ExternalName' })), [
    { file: 'f', object: ref, path: 'spec.externalName', message: 'expected a DNS name for an ExternalName service, got nothing' }
  ])
  t.same(issuesOf(() => parse({ type: 'Ingress', ports: [{ port: 80 }] }))[0]?.message, 'expected one of ClusterIP, NodePort, LoadBalancer, ExternalName, got "Ingress"')

  const legacy = parse({ ports: [{ port: 80 }], externalTrafficPolicy: 'Global', internalTrafficPolicy: 'Local', allocateLoadBalancerNodePorts: false, publishNotReadyAddresses: true })
  t.same([legacy.externalTrafficPolicy, legacy.internalTrafficPolicy, legacy.allocateLoadBalancerNodePorts, legacy.publishNotReadyAddresses], ['Cluster', 'Local', false, true])
  t.equal(parse({ ports: [{ port: 80 }], selector: {} }).selector, null)
  t.equal(parse({ ports: [{ port: 80 }], selector: null }).selector, null)
  t.same(issuesOf(() => parse({ ports: [{ port: 80 }], selector: { app: 1 } })), [
    { file: 'f', object: ref, path: 'spec.selector.app', message: 'expected a string value, got 1' }
  ])
  t.same(issuesOf(() => parse({ ports: [{ port: 80 }], sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } } })), [
    { file: 'f', object: ref, path: 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', message: 'expected an integer 1-86400, got 86401' }
  ])
  t.same(issuesOf(() => parse({ ports: [{ port: 80 }], sessionAffinity: 'Sticky' }))[0]?.message, 'expected one of None, ClientIP, got "Sticky"')
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80 }] }, { name: 'Web_1' })], 'f')), [{
    file: 'f',
    object: 'Service default/Web_1',
    path: 'metadata.name',
    message: 'expected a DNS-1035 label (lowercase letters, digits and \'-\', starting with a letter and ending with a letter or digit, at most 63 characters), got "Web_1"'
  }])
  t.equal(parse({ ports: [{ port: 80 }] }, { metadata: { name: 'web', uid: 'u-1' } }).uid, 'u-1')
})

t.test('wrong apiVersion', async (t) => {
  t.same(issuesOf(() => parseObjects([{ ...svc({ ports: [{ port: 80 }] }), apiVersion: 'apps/v1' }], 'f')), [
    { file: 'f', object: ref, path: 'apiVersion', message: 'expected "v1" for kind Service, got "apps/v1"' }
  ])
  t.same(issuesOf(() => parseObjects([{ apiVersion: 'v1', kind: 'EndpointSlice', addressType: 'IPv4', metadata: { name: 's', labels: { 'kubernetes.io/service-name': 'web' } } }], 'f')), [
    { file: 'f', object: 'EndpointSlice default/s', path: 'apiVersion', message: 'expected "discovery.k8s.io/v1" or "discovery.k8s.io/v1beta1" for kind EndpointSlice, got "v1"' }
  ])
})

t.test('an invalid document reports all of its issues', async (t) => {
  const doc = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      svc({ clusterIP: 'bogus', ports: [{ name: 'a', port: 0 }, { port: 80, protocol: 'SCTP' }] }),
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web' }, subsets: [{ addresses: [{ ip: '1.2.3' }], ports: [{ port: 99999 }] }] },
      { apiVersion: 'v1', kind: 'Service', metadata: {}, spec: { ports: [{ port: 80 }] } },
      7,
      { metadata: { name: 'x' } }
    ]
  }
  t.same(issuesOf(() => parseDocument(JSON.stringify(doc), 'all.json')), [
    { file: 'all.json', object: ref, path: 'spec.clusterIP', message: 'expected an IPv4 or IPv6 address, "None" or "", got "bogus"' },
    { file: 'all.json', object: ref, path: 'spec.ports[0].port', message: 'expected an integer 1-65535, got 0' },
    { file: 'all.json', object: ref, path: 'spec.ports[1].name', message: 'expected a port name: every port needs one when a service has more than one port' },
    { file: 'all.json', object: ref, path: 'spec.ports[1].protocol', message: 'SCTP is not supported by svcproxy (expected TCP or UDP)' },
    { file: 'all.json', object: 'Endpoints default/web', path: 'subsets[0].addresses[0].ip', message: 'expected an IPv4 or IPv6 address, got "1.2.3"' },
    { file: 'all.json', object: 'Endpoints default/web', path: 'subsets[0].ports[0].port', message: 'expected an integer 1-65535, got 99999' },
    { file: 'all.json', object: '', path: 'items[2].metadata.name', message: 'expected a non-empty name, got nothing' },
    { file: 'all.json', object: '', path: 'items[3]', message: 'expected a Kubernetes object, got 7' },
    { file: 'all.json', object: '', path: 'items[4].kind', message: 'expected the object\'s kind (such as "Service"), got nothing' }
  ])
  const err = (() => { try { parseDocument(JSON.stringify(doc), 'all.json') } catch (e) { return e } })()
  t.ok(err instanceof ValidationError)
  t.match((err as ValidationError).message, /^9 validation errors:\nall\.json: Service default\/web: spec\.clusterIP: expected/)
})

t.test('duplicates and unknown kinds', async (t) => {
  const s = svc({ ports: [{ port: 80 }] })
  t.same(issuesOf(() => parseObjects([s, { ...s, metadata: { name: 'web', namespace: 'default' } }], 'f')), [
    { file: 'f', object: ref, path: '', message: 'expected each object once, got Service default/web again (first at [0], again at [1])' }
  ])
  t.equal(parseObjects([s, { ...s, metadata: { name: 'web', namespace: 'other' } }], 'f').objects.length, 2)
  const doc = parseObjects([{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } }, { kind: 'Secret', metadata: { name: 'x', namespace: 'ns', labels: 5 } }], 'f.json')
  t.same(doc, {
    objects: [],
    warnings: [
      'f.json: skipping Deployment default/web (svcproxy reads Service, Endpoints, EndpointSlice, Pod)',
      'f.json: skipping Secret ns/x (svcproxy reads Service, Endpoints, EndpointSlice, Pod)'
    ]
  })
})

t.test('endpoints', async (t) => {
  const ep = (subsets: unknown): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web' }, subsets })
  const parsed = parseObjects([ep([{
    addresses: [{ ip: 'fd00::1', nodeName: 'n1', targetRef: { kind: 'Pod', name: 'web-1' } }],
    notReadyAddresses: [{ ip: '10.0.0.2', targetRef: { kind: 'Node', name: 'n2' } }],
    ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }]
  }])], 'f').objects[0] as Endpoints
  t.same(parsed.subsets, [{
    addresses: [{ ip: 'fd00::1', nodeName: 'n1', podName: 'web-1' }],
    notReadyAddresses: [{ ip: '10.0.0.2', nodeName: '', podName: '' }],
    ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }]
  }])
  t.same((parseObjects([ep(null)], 'f').objects[0] as Endpoints).subsets, [])
  t.same(issuesOf(() => parseObjects([ep([{ addresses: [{ ip: '10.0.0.1' }], notReadyAddresses: [{}], ports: [{ port: 80 }, { port: 81, name: 'b' }, { port: 82, name: 'b' }] }])], 'f')), [
    { file: 'f', object: 'Endpoints default/web', path: 'subsets[0].notReadyAddresses[0].ip', message: 'expected an IPv4 or IPv6 address, got nothing' },
    { file: 'f', object: 'Endpoints default/web', path: 'subsets[0].ports[0].name', message: 'expected a port name: every port needs one when there is more than one port' },
    { file: 'f', object: 'Endpoints default/web', path: 'subsets[0].ports[2].name', message: 'expected a unique port name, got "b" a second time' }
  ])
})

t.test('endpoint slices', async (t) => {
  const slice = (extra: Record<string, unknown>, labels: unknown = { 'kubernetes.io/service-name': 'web' }): Record<string, unknown> =>
    ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-abc', labels }, addressType: 'IPv4', ...extra })
  const s = parseObjects([slice({
    endpoints: [
      { addresses: ['10.0.0.1'] },
      { addresses: ['10.0.0.2'], conditions: { ready: false } },
      { addresses: ['10.0.0.3'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'n', targetRef: { kind: 'Pod', name: 'p' } },
      { addresses: ['10.0.0.4'], conditions: { ready: null, serving: null, terminating: null } }
    ],
    ports: [{ port: 80, name: 'http' }, { name: 'all' }, { port: null }, { port: 53, protocol: 'UDP' }]
  })], 'f').objects[0] as EndpointSlice
  t.same(s.endpoints.map((e) => e.conditions), [
    { ready: true, serving: true, terminating: false },
    { ready: false, serving: false, terminating: false },
    { ready: false, serving: true, terminating: true },
    { ready: true, serving: true, terminating: false }
  ])
  t.same([s.endpoints[2]?.nodeName, s.endpoints[2]?.podName], ['n', 'p'])
  t.same(s.ports, [{ name: 'http', port: 80, protocol: 'TCP' }, { name: '', port: 53, protocol: 'UDP' }], 'ports without a number are dropped')
  t.equal(s.serviceName, 'web')

  const beta = parseObjects([{ ...slice({ endpoints: [{ addresses: ['10.0.0.1'], topology: { 'kubernetes.io/hostname': 'node-a' } }] }), apiVersion: 'discovery.k8s.io/v1beta1' }], 'f')
  t.equal((beta.objects[0] as EndpointSlice).endpoints[0]?.nodeName, 'node-a')

  t.same(issuesOf(() => parseObjects([slice({ endpoints: [] }, { app: 'web' })], 'f')), [
    { file: 'f', object: 'EndpointSlice default/web-abc', path: 'metadata.labels["kubernetes.io/service-name"]', message: 'expected the name of the Service this slice belongs to, got nothing' }
  ])
  t.same(issuesOf(() => parseObjects([slice({ addressType: 'IPv6', endpoints: [{ addresses: ['10.0.0.1'] }, { addresses: [] }] })], 'f')), [
    { file: 'f', object: 'EndpointSlice default/web-abc', path: 'endpoints[0].addresses[0]', message: 'expected an IPv6 address, got "10.0.0.1"' },
    { file: 'f', object: 'EndpointSlice default/web-abc', path: 'endpoints[1].addresses', message: 'expected at least one address, got none' }
  ])
  t.same(issuesOf(() => parseObjects([slice({ addressType: undefined })], 'f')), [
    { file: 'f', object: 'EndpointSlice default/web-abc', path: 'addressType', message: 'expected one of IPv4, IPv6, FQDN, got nothing' }
  ])
  t.equal((parseObjects([slice({ addressType: 'FQDN', endpoints: [{ addresses: ['db.example.com'] }] })], 'f').objects[0] as EndpointSlice).endpoints[0]?.addresses[0], 'db.example.com')
  t.same(issuesOf(() => parseObjects([slice({ endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: 'yes' } }] })], 'f'))[0]?.path, 'endpoints[0].conditions.ready')
})

t.test('pods', async (t) => {
  const pod = parseObjects([{
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'p', labels: { app: 'a' } },
    spec: { containers: [{ name: 'a', ports: [{ containerPort: 80, name: 'http' }, { containerPort: 9000, protocol: 'SCTP' }] }, { name: 'b', ports: [{ containerPort: 53, protocol: 'UDP' }] }] },
    status: { podIPs: [{ ip: 'fd00::5' }], phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] }
  }], 'f').objects[0] as Pod
  t.same(pod.ports, [{ name: 'http', containerPort: 80, protocol: 'TCP' }, { name: '', containerPort: 53, protocol: 'UDP' }], 'SCTP container ports are dropped')
  t.equal(pod.podIP, 'fd00::5')
  t.equal(pod.ready, false)
  t.same(issuesOf(() => parseObjects([{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ ports: [{ containerPort: 0 }] }] }, status: { podIP: '10.1' } }], 'f')), [
    { file: 'f', object: 'Pod default/p', path: 'status.podIP', message: 'expected an IPv4 or IPv6 address, got "10.1"' },
    { file: 'f', object: 'Pod default/p', path: 'spec.containers[0].ports[0].containerPort', message: 'expected an integer 1-65535, got 0' }
  ])
})

t.test('__proto__ keys cannot pollute', async (t) => {
  const text = '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"__proto__":"x","constructor":"y","app":"a"}}}'
  const pod = parseDocument(text, 'f').objects[0] as Pod
  t.equal(Object.hasOwn(pod.labels, '__proto__'), true)
  t.equal(pod.labels.__proto__, 'x')
  t.equal(pod.labels.constructor, 'y')
  t.same(Object.keys(pod.labels).sort(), ['__proto__', 'app', 'constructor'])
  t.equal(({} as Record<string, unknown>).x, undefined)
  t.equal(Object.getPrototypeOf({}), Object.prototype)
  // Inherited properties are not data: an object with no own spec is not given Object.prototype's.
  t.same(issuesOf(() => parseDocument('{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"__proto__":{"spec":{"ports":[{"port":80}]}}}', 'f')), [
    { file: 'f', object: ref, path: 'spec.ports', message: 'expected at least one port for a ClusterIP service, got none' }
  ])
})

t.test('size limits', async (t) => {
  const big = 'x'.repeat(1024 * 1024 + 1)
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80 }] }, { name: 'web', annotations: { 'example.com/blob': big } })], 'f')), [
    { file: 'f', object: ref, path: 'metadata.annotations["example.com/blob"]', message: 'expected a string of at most 1 MiB, got 1048577 bytes' }
  ])
  t.equal(parseObjects([svc({ ports: [{ port: 80 }] }, { name: 'web', annotations: { a: 'x'.repeat(1024 * 1024) } })], 'f').objects.length, 1, 'exactly 1 MiB is fine')
  t.same(issuesOf(() => parseObjects([svc({ ports: [{ port: 80 }], junk: [{ deep: 'é'.repeat(600 * 1024) }] })], 'f'))[0]?.path, 'spec.junk[0].deep', 'the limit counts UTF-8 bytes')

  const huge = ' '.repeat(64 * 1024 * 1024) + '[]'
  t.same(issuesOf(() => parseDocument(huge, 'huge.json')), [
    { file: 'huge.json', object: '', path: '', message: 'document is 67108866 bytes; the limit is 64 MiB' }
  ])
})

t.test('junk never throws anything but ValidationError', async (t) => {
  const cyclic: Record<string, unknown> = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } }
  cyclic.self = cyclic
  t.equal(parseObjects([cyclic], 'f').objects.length, 1, 'cycles in ignored fields are harmless')

  const loop: Record<string, unknown> = { apiVersion: 'v1', kind: 'List' }
  loop.items = [loop]
  t.match(issuesOf(() => parseObjects([loop], 'f'))[0]?.message, /nested at most 16 deep/)

  const trap = { apiVersion: 'v1', kind: 'Service', get metadata (): never { throw new Error('boom') } }
  t.same(issuesOf(() => parseObjects([trap], 'f')), [{ file: 'f', object: '', path: '', message: 'could not read the document: boom' }])

  const junk: unknown[] = [null, 1, 'x', true, [], [[]], {}, { kind: 5 }, { kind: 'Service' }, { kind: 'Service', metadata: 'x', spec: 'y' },
    { kind: 'Service', apiVersion: 'v1', metadata: { name: 'a', namespace: 7, labels: [] }, spec: { ports: 'p', selector: [1], type: {}, clusterIPs: 'x' } },
    { kind: 'Pod', apiVersion: 'v1', metadata: { name: 'b' }, spec: { containers: [null, { ports: [null, 'x'] }] }, status: { conditions: 'x', podIPs: [5] } },
    { kind: 'Endpoints', apiVersion: 'v1', metadata: { name: 'c' }, subsets: [null, { addresses: 'x', ports: [{ port: 80, protocol: 5 }] }] },
    { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', metadata: { name: 'd', labels: { 'kubernetes.io/service-name': 5 } }, endpoints: [null, { addresses: [1], conditions: 'x', targetRef: 4 }], ports: 'x' }]
  for (let i = 0; i < junk.length; i++) {
    const issues = issuesOf(() => parseObjects([junk[i]], 'f'))
    t.ok(issues.length > 0, `junk ${i} is rejected`)
  }
  t.ok(issuesOf(() => parseObjects(junk, 'f')).length > 20)
  t.ok(issuesOf(() => parseObjects(5 as unknown as unknown[], 'f')).length === 1)
  t.ok(issuesOf(() => parseDocument(null as unknown as string, 'f')).length === 1)

  // Millions of bad entries are summarised rather than listed.
  const many = svc({ ports: Array.from({ length: 5000 }, () => ({ port: 0, name: 'x' })) })
  const issues = issuesOf(() => parseObjects([many], 'f'))
  t.equal(issues.length, 1001)
  t.match(issues[1000]?.message, /more issues not shown/)
})

t.test('readDocumentFile', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-model-'))
  await t.rejects(readDocumentFile(join(dir, 'missing.json')), FileError)
  await t.rejects(readDocumentFile(join(dir, 'missing.json')), { code: 'SVCPROXY_FILE', message: `${join(dir, 'missing.json')}: no such file` })
  await t.rejects(readDocumentFile(dir), { code: 'SVCPROXY_FILE', message: `${dir}: is a directory, expected a JSON file` })
  const bad = join(dir, 'bad.json')
  await writeFile(bad, Buffer.from([0x5b, 0xff, 0x5d]))
  await t.rejects(readDocumentFile(bad), { code: 'SVCPROXY_INVALID', issues: [{ file: bad, object: '', path: '', message: 'expected UTF-8 text, found bytes that are not valid UTF-8' }] })
  const syntax = join(dir, 'syntax.json')
  await writeFile(syntax, '{"kind": }')
  const err = await readDocumentFile(syntax).then(() => null, (e: unknown) => e)
  t.ok(err instanceof ValidationError)
  t.match((err as ValidationError).issues, [{ file: syntax, path: '', message: /^invalid JSON at line 1, column 10/ }])
})

t.test('addresses the API server refuses (unspecified, multicast, link-local) are refused, naming the path', async (t) => {
  const parse = (spec: Record<string, unknown>, extra: Record<string, unknown> = {}): Service =>
    parseObjects([{ ...svc({ ports: [{ port: 80 }], ...spec }), ...extra }], 'f').objects[0] as Service
  const paths = (fn: () => unknown): string[] => issuesOf(fn).map((i) => i.path)

  t.equal(addressClass('0.0.0.0'), 'unspecified')
  t.equal(addressClass('::'), 'unspecified')
  t.equal(addressClass('::ffff:0.0.0.0'), 'unspecified', 'an IPv4-mapped address counts as its IPv4 address')
  t.equal(addressClass('169.254.169.254'), 'link-local')
  t.equal(addressClass('fe80::1'), 'link-local')
  t.equal(addressClass('febf::1'), 'link-local', 'fe80::/10 reaches febf')
  t.equal(addressClass('fec0::1'), 'unicast')
  t.equal(addressClass('224.0.0.251'), 'link-local multicast')
  t.equal(addressClass('ff02::fb'), 'link-local multicast')
  t.equal(addressClass('239.1.2.3'), 'multicast')
  t.equal(addressClass('ff05::2'), 'multicast')
  for (const ok of ['127.96.0.1', '10.0.0.1', '::1', 'fd00::1', '223.255.255.255', '240.0.0.1']) t.equal(addressClass(ok), 'unicast', ok)

  // clusterIP: what the API server's allocator never hands out, and what nothing can listen on.
  t.same(issuesOf(() => parse({ clusterIP: '0.0.0.0' })), [
    { file: 'f', object: ref, path: 'spec.clusterIP', message: 'expected the address of one host, got "0.0.0.0" (the unspecified address stands for every address of this node)' }
  ])
  t.same(issuesOf(() => parse({ clusterIP: '239.1.2.3', clusterIPs: ['239.1.2.3'] })), [
    { file: 'f', object: ref, path: 'spec.clusterIP', message: 'expected a unicast address, got "239.1.2.3" (multicast: nothing can listen there)' }
  ], 'reported once, not again for spec.clusterIPs[0]')
  t.same(paths(() => parse({ clusterIPs: ['::'] })), ['spec.clusterIPs[0]'])
  t.same(paths(() => parse({ clusterIP: '10.0.0.1', clusterIPs: ['10.0.0.1', 'ff02::1'] })), ['spec.clusterIPs[1]'])
  t.equal(parse({ clusterIP: '169.254.0.10' }).clusterIP, '169.254.0.10', 'a link-local clusterIP is the allocator\'s business (its range), as in the API server')
  t.same(issuesOf(() => parse({ clusterIP: '10.0.0.300' }))[0]?.message, 'expected an IPv4 or IPv6 address, "None" or "", got "10.0.0.300"', 'the syntax message is unchanged')

  // externalIPs: ValidateNonSpecialIP (loopback stays allowed: svcproxy serves on 127/8).
  t.same(issuesOf(() => parse({ externalIPs: ['0.0.0.0', '::', '169.254.1.1', 'fe80::1', '239.1.1.1', '224.0.0.1', '127.0.0.2', '192.0.2.10'] })), [
    { file: 'f', object: ref, path: 'spec.externalIPs[0]', message: 'expected the address of one host, got "0.0.0.0" (the unspecified address stands for every address of this node)' },
    { file: 'f', object: ref, path: 'spec.externalIPs[1]', message: 'expected the address of one host, got "::" (the unspecified address stands for every address of this node)' },
    { file: 'f', object: ref, path: 'spec.externalIPs[2]', message: 'expected an address outside the link-local ranges 169.254.0.0/16 and fe80::/10 (the API server refuses them here), got "169.254.1.1"' },
    { file: 'f', object: ref, path: 'spec.externalIPs[3]', message: 'expected an address outside the link-local ranges 169.254.0.0/16 and fe80::/10 (the API server refuses them here), got "fe80::1"' },
    { file: 'f', object: ref, path: 'spec.externalIPs[4]', message: 'expected a unicast address, got "239.1.1.1" (multicast: nothing can listen there)' },
    { file: 'f', object: ref, path: 'spec.externalIPs[5]', message: 'expected a unicast address outside 224.0.0.0/24 and ff02::/16, got "224.0.0.1" (link-local multicast)' }
  ])
  t.same(issuesOf(() => parse({ externalIPs: ['nope'] }))[0]?.message, 'expected an IPv4 or IPv6 address, got "nope"', 'the syntax message is unchanged')

  // Load-balancer ingress IPs are bound too: unspecified and multicast refused.
  const lb = (ip: string): Record<string, unknown> => ({ status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }, { ip }] } } })
  t.same(paths(() => parse({ type: 'LoadBalancer' }, lb('0.0.0.0'))), ['status.loadBalancer.ingress[1].ip'])
  t.same(paths(() => parse({ type: 'LoadBalancer' }, lb('ff0e::1'))), ['status.loadBalancer.ingress[1].ip'])
  t.same(parse({ type: 'LoadBalancer' }, lb('169.254.3.3')).loadBalancerIPs, ['203.0.113.7', '169.254.3.3'], 'the API server accepts a link-local ingress IP')

  // Endpoints and slices: what the API server refuses (unspecified, link-local); loopback stays.
  const ep = (ip: string): Record<string, unknown> => ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web' }, subsets: [{ addresses: [{ ip: '10.0.0.1' }], notReadyAddresses: [{ ip }], ports: [{ port: 80 }] }] })
  t.same(issuesOf(() => parseObjects([ep('0.0.0.0')], 'f')), [
    { file: 'f', object: 'Endpoints default/web', path: 'subsets[0].notReadyAddresses[0].ip', message: 'expected the address of one host, got "0.0.0.0" (the unspecified address stands for every address of this node)' }
  ])
  t.same(paths(() => parseObjects([ep('169.254.169.254')], 'f')), ['subsets[0].notReadyAddresses[0].ip'])
  t.same(paths(() => parseObjects([ep('ff02::1')], 'f')), ['subsets[0].notReadyAddresses[0].ip'])
  for (const ok of ['127.0.0.1', '239.1.1.1', '::1']) t.equal(parseObjects([ep(ok)], 'f').objects.length, 1, `endpoint ${ok} accepted`)
  const slice = (addressType: string, a: string): Record<string, unknown> => ({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'web-1', labels: { 'kubernetes.io/service-name': 'web' } }, addressType, endpoints: [{ addresses: [a] }], ports: [{ port: 80 }] })
  t.same(issuesOf(() => parseObjects([slice('IPv6', '::')], 'f')), [
    { file: 'f', object: 'EndpointSlice default/web-1', path: 'endpoints[0].addresses[0]', message: 'expected the address of one host, got "::" (the unspecified address stands for every address of this node)' }
  ])
  t.same(paths(() => parseObjects([slice('IPv4', '169.254.0.1')], 'f')), ['endpoints[0].addresses[0]'])
})

t.test('an endpoint at its own service\'s address and port is refused when both are in the document', async (t) => {
  const service = svc({ clusterIP: '127.96.0.5', externalIPs: ['127.97.0.5'], ports: [{ name: 'http', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] })
  const ep = (ip: string, port: number, name = 'http', protocol = 'TCP'): Record<string, unknown> =>
    ({ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web' }, subsets: [{ addresses: [{ ip: '127.0.0.9' }, { ip }], ports: [{ name, port, protocol }] }] })
  t.same(issuesOf(() => parseObjects([service, ep('127.96.0.5', 80)], 'f')), [
    { file: 'f', object: 'Endpoints default/web', path: 'subsets[0].addresses[1].ip', message: 'expected an endpoint other than the clusterIP of Service default/web at its port "http", got 127.96.0.5:80: connections would loop back into svcproxy' }
  ])
  t.same(issuesOf(() => parseObjects([ep('127.97.0.5', 53, 'dns', 'UDP'), service], 'f')).map((i) => [i.path, i.message.slice(0, 45)]), [
    ['subsets[0].addresses[1].ip', 'expected an endpoint other than the externalI']
  ], 'an externalIP, UDP, whatever the order in the document')
  const lbSvc = { ...svc({ type: 'LoadBalancer', clusterIP: '127.96.0.6', ports: [{ port: 443 }] }, { name: 'lb' }), status: { loadBalancer: { ingress: [{ ip: '127.98.0.6' }] } } }
  const lbSlice = { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'lb-1', labels: { 'kubernetes.io/service-name': 'lb' } }, addressType: 'IPv4', endpoints: [{ addresses: ['127.0.0.9'] }, { addresses: ['127.98.0.6'] }], ports: [{ port: 443 }] }
  t.same(issuesOf(() => parseObjects([lbSvc, lbSlice], 'f')).map((i) => [i.object, i.path]), [['EndpointSlice default/lb-1', 'endpoints[1].addresses[0]']], 'a load-balancer IP, in a slice')

  // Not loops: another port, another protocol, another service's address, or no Service in the document.
  t.equal(parseObjects([service, ep('127.96.0.5', 8080)], 'f').objects.length, 2, 'the clusterIP at another port (a pod on the VIP) is allowed')
  t.equal(parseObjects([service, ep('127.96.0.5', 53)], 'f').objects.length, 2, 'http (TCP) at the clusterIP\'s port 53 is allowed: 53 is served for UDP only')
  const other = svc({ clusterIP: '127.96.0.7', ports: [{ name: 'http', port: 80 }] }, { name: 'other' })
  t.equal(parseObjects([service, other, ep('127.96.0.7', 80)], 'f').objects.length, 3, 'another service\'s clusterIP (chaining services) is allowed')
  t.equal(parseObjects([ep('127.96.0.5', 80)], 'f').objects.length, 1, 'without its Service the document cannot know: the data plane skips it (test/services.test.ts)')
})
