// A node in a box (issue 15): two nodes and their pods in network namespaces, one Redis, one
// `svcproxy run --vip-interface svc0` per node. Every service address a client reaches is put
// on the node by svcproxy (the test adds none), traffic takes the kernel's real routes between
// namespaces, and every assertion waits on a fact (an answer, an address on a link), never on a
// clock. Needs root and iproute2: without them this file fails, naming what is missing.
// Topology: test/node/netns.ts; `docs/node.md` draws it too.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { endpointSlice, list, service, type ServiceShape } from './manifests.js'
import {
  Cluster, NODE_ADDRESS, type NsProcess, type PodSpec, allAddresses, ip, linkAddresses, missingPrerequisites, runIn, startDaemon,
  startRedisIn, svcproxyArgv, sweepStaleNamespaces, until,
} from './netns.js'
import { Agent, acceptedBy, startPodServer } from './programs.js'

const PODS: PodSpec[] = [
  { name: 'web-1a', node: 1, ip: '10.244.1.10' },
  { name: 'web-1b', node: 1, ip: '10.244.1.11' },
  { name: 'web-2a', node: 2, ip: '10.244.2.10' },
  { name: 'web-2b', node: 2, ip: '10.244.2.11' },
  { name: 'client', node: 1, ip: '10.244.1.100' },
]
const WEB_PODS = PODS.filter((p) => p.name.startsWith('web-'))
const podsOf = (...names: string[]): PodSpec[] => WEB_PODS.filter((p) => names.includes(p.name))

const WEB: ServiceShape = { name: 'web', clusterIP: '10.96.0.10', tcpPort: 80, udpPort: 53, nodePorts: { tcp: 30080, udp: 30053 }, externalIPs: ['10.100.0.10'] }
const LOCAL: ServiceShape = { name: 'local', clusterIP: '10.96.0.11', tcpPort: 80, nodePorts: { tcp: 30081 }, externalTrafficPolicy: 'Local' }
const VIP_LINK = 'svc0'
const [N1, N2] = [NODE_ADDRESS[1], NODE_ADDRESS[2]]

/** True when every `width` consecutive answers are `width` different pods: round-robin over that many. */
function roundRobin (answers: string[], width: number): boolean {
  for (let i = 0; i + width <= answers.length; i++) if (new Set(answers.slice(i, i + width)).size !== width) return false
  return answers.length >= width
}

const missing = missingPrerequisites()
if (missing.length > 0) {
  // Never a skip: a CI machine without these would otherwise pass without testing anything.
  t.fail(`the namespace cluster cannot be built; missing: ${missing.join('; ')}`)
} else {
  const swept = sweepStaleNamespaces()
  if (swept.length > 0) t.comment(`removed ${swept.length} namespaces left by earlier runs: ${swept.join(' ')}`)
  const started = Date.now()
  const c = new Cluster({ pods: PODS })
  t.teardown(async () => { await c.destroy() })
  c.build()

  const servers = new Map(await Promise.all(WEB_PODS.map(async (p) => [p.name, await startPodServer(c, p.name)] as const)))
  const [client, onNode2, redis] = await Promise.all([Agent.start(c, c.pod('client')), Agent.start(c, c.node(2)), startRedisIn(c)])

  /** `svcproxy apply -f` (or delete) inside node1, where the Redis address is; returns the revision it landed at. */
  let files = 0
  const store = async (verb: 'apply' | 'delete', args: string[]): Promise<number> => {
    const r = await runIn(c.node(1), svcproxyArgv(verb, ...args, '--redis', redis.url, ...(verb === 'apply' ? ['--service-cluster-ip-range', '10.96.0.0/16'] : [])))
    if (r.code !== 0) throw new Error(`svcproxy ${verb} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`)
    return Number(/revision (\d+)/.exec(r.stderr)?.[1] ?? NaN)
  }
  const apply = async (items: unknown[]): Promise<number> => {
    const file = join(c.dir, `apply-${++files}.json`)
    writeFileSync(file, JSON.stringify(list(items)))
    return await store('apply', ['-f', file])
  }

  const stateFile = (n: 1 | 2): string => join(c.dir, `node${n}.state.json`)
  const daemons = new Map<1 | 2, NsProcess>(await Promise.all(([1, 2] as const).map(async (n) => [n, await startDaemon(c, { redisUrl: redis.url, node: n, stateFile: stateFile(n) })] as const)))
  // Services arrive while both daemons run: addresses are added at run time, not only at start.
  await apply([service(WEB), endpointSlice('web', WEB_PODS), service(LOCAL), endpointSlice('local', WEB_PODS, false)])
  // The service addresses on a node's VIP link. The kernel gives an up link its own IPv6
  // link-local address (fe80::/64); svcproxy neither adds nor prunes it, and neither counts here.
  const vips = (n: 1 | 2): string[] => (linkAddresses(c.node(n), VIP_LINK) ?? []).filter((a) => !a.startsWith('fe80:')).sort()
  t.comment(`cluster up in ${Date.now() - started} ms (namespaces, ${servers.size} pod servers, Redis, 2 daemons)`)

  t.test('TCP and UDP to a clusterIP reach pods on both nodes, round-robin; UDP replies come from the VIP', async (t) => {
    const want = ['10.100.0.10/32', '10.96.0.10/32', '10.96.0.11/32']
    t.ok(await until(() => vips(1).join() === want.join() && vips(2).join() === want.join()), `svcproxy put the clusterIPs and the externalIP on ${VIP_LINK} of both nodes`)
    t.same(vips(1), want, 'node1')
    t.same(vips(2), want, 'node2')
    t.ok(await until(async () => (await client.tcp(WEB.clusterIP, 80)).ok), 'the clusterIP answers')

    const tcp = await client.tcpSeries(WEB.clusterIP, 80, 8)
    t.ok(roundRobin(tcp, 4), `TCP: every 4 consecutive connections reach the 4 pods: ${tcp.join(' ')}`)
    t.ok(tcp.includes('web-1a') && tcp.includes('web-2a'), 'pods on both nodes answer')

    const udp = await client.udpSeries(WEB.clusterIP, 53, 8)
    const names = udp.map((a) => a.ok ? a.data ?? '' : `ERR:${a.code ?? '?'}`)
    t.ok(roundRobin(names, 4), `UDP: every 4 consecutive sessions reach the 4 pods: ${names.join(' ')}`)
    t.same([...new Set(udp.map((a) => a.from))], [`${WEB.clusterIP}:53`], 'every UDP reply comes from the VIP and port the client sent to')

    const ext = await client.tcp('10.100.0.10', 80)
    t.ok(ext.ok && WEB_PODS.some((p) => p.name === ext.data), `the externalIP answers through node1: ${ext.data ?? ext.code ?? ''}`)
  })

  t.test("node 2's address:nodePort reaches the service", async (t) => {
    const tcp = await client.tcpSeries(N2, 30080, 8)
    t.ok(roundRobin(tcp, 4), `TCP ${N2}:30080 reaches all 4 pods in turn: ${tcp.join(' ')}`)
    const udp = await client.udp(N2, 30053)
    t.ok(udp.ok && WEB_PODS.some((p) => p.name === udp.data), `UDP ${N2}:30053 answers: ${udp.data ?? udp.code ?? ''}`)
    t.equal(udp.from, `${N2}:30053`, 'from the node address and nodePort')
  })

  t.test("externalTrafficPolicy Local: node 2's nodePort reaches only node 2's pods; node 1's refuses without a local pod", async (t) => {
    const two = await client.tcpSeries(N2, 30081, 6)
    t.same([...new Set(two)].sort(), ['web-2a', 'web-2b'], `node2's nodePort: only node2's pods, though node1's are endpoints too: ${two.join(' ')}`)
    const one = await client.tcpSeries(N1, 30081, 6)
    t.same([...new Set(one)].sort(), ['web-1a', 'web-1b'], `node1's nodePort: only node1's pods: ${one.join(' ')}`)

    await apply([endpointSlice('local', podsOf('web-2a', 'web-2b'), false)])
    const refused = (a: string): boolean => a === 'ERR:ECONNRESET' || a === 'ERR:ECONNREFUSED'
    t.ok(await until(async () => refused((await client.tcpSeries(N1, 30081, 1))[0] ?? '')), "node1's nodePort refuses once node1 has no local pod")
    const after = await client.tcpSeries(N1, 30081, 4)
    t.ok(after.every(refused), `refused every time, never forwarded to node2 nor left hanging: ${after.join(' ')}`)
    const stillTwo = await client.tcpSeries(N2, 30081, 4)
    t.same([...new Set(stillTwo)].sort(), ['web-2a', 'web-2b'], `node2's nodePort still serves: ${stillTwo.join(' ')}`)
    const cluster = await client.tcpSeries(LOCAL.clusterIP, 80, 4)
    t.same([...new Set(cluster)].sort(), ['web-2a', 'web-2b'], `the clusterIP (policy Cluster inside) still reaches node2's pods from node1: ${cluster.join(' ')}`)
  })

  t.test('a pod removed from the EndpointSlice gets no new connection on either node within a second', async (t) => {
    const gone = 'web-2b'
    const paths = { node1: [WEB.clusterIP, 80], node2: [N2, 30080] } as const
    const before = await client.tcpSeries(WEB.clusterIP, 80, 4)
    t.ok(before.includes(gone), `${gone} serves before: ${before.join(' ')}`)

    await apply([endpointSlice('web', WEB_PODS.filter((p) => p.name !== gone))])
    const applied = Date.now()
    // Connections through each node's daemon in turn, until both have gone 2 full rounds (6
    // connections) without the removed pod; the last one that still reached it is the moment it
    // stopped getting any.
    const last = { node1: 0, node2: 0 }
    const clean = { node1: 0, node2: 0 }
    while (clean.node1 < 6 || clean.node2 < 6) {
      for (const k of ['node1', 'node2'] as const) {
        const at = Date.now()
        const a = await client.tcp(paths[k][0], paths[k][1])
        if (a.data === gone) { last[k] = at; clean[k] = 0 } else clean[k]++
      }
      if (Date.now() - applied > 10000) break
    }
    for (const k of ['node1', 'node2'] as const) {
      const lag = last[k] === 0 ? 0 : last[k] - applied
      const what = last[k] === 0 ? 'no connection after the write reached it' : `the last one to reach it started ${lag} ms after the write`
      t.ok(clean[k] >= 6 && lag < 1000, `through ${k}'s daemon: ${what} (< 1000 ms)`)
    }
    const accepted = acceptedBy(servers.get(gone) as NsProcess)
    const one = await client.tcpSeries(WEB.clusterIP, 80, 6)
    const two = await client.tcpSeries(N2, 30080, 6)
    t.notOk([...one, ...two].includes(gone), `no answer from ${gone}: ${one.join(' ')} | ${two.join(' ')}`)
    t.equal(acceptedBy(servers.get(gone) as NsProcess), accepted, `${gone} itself accepted no connection meanwhile`)
  })

  let lastRevision = 0
  t.test("deleting the service removes its address from both nodes' VIP interfaces", async (t) => {
    lastRevision = await store('delete', ['service', 'default/local'])
    t.ok(await until(() => !vips(1).includes('10.96.0.11/32') && !vips(2).includes('10.96.0.11/32')), `10.96.0.11 is gone from ${VIP_LINK} on both nodes`)
    t.same(vips(1), ['10.100.0.10/32', '10.96.0.10/32'], 'node1 keeps the addresses still needed')
    t.same(vips(2), ['10.100.0.10/32', '10.96.0.10/32'], 'node2 too')
    const a = await client.tcp(LOCAL.clusterIP, 80, 2000)
    t.notOk(a.ok, `the deleted clusterIP answers nothing (${a.code ?? ''})`)
  })

  t.test("node 2's daemon killed with SIGKILL and restarted serves from its state file with Redis stopped; no stale or duplicate address", async (t) => {
    const revisionOf = (n: 1 | 2): number => {
      try { return (JSON.parse(readFileSync(stateFile(n), 'utf8')) as { revision: number }).revision } catch { return 0 }
    }
    t.ok(await until(() => revisionOf(2) >= lastRevision), `node2's state file holds revision ${lastRevision}`)
    await redis.proc.kill('SIGKILL')
    const d2 = daemons.get(2) as NsProcess
    await d2.kill('SIGKILL')
    t.equal(d2.child.signalCode, 'SIGKILL', 'node2 daemon killed')
    t.same(vips(2), ['10.100.0.10/32', '10.96.0.10/32'], 'a SIGKILL leaves the addresses behind')
    // What a kill can leave that the state does not need: the deleted service's address (had the
    // kill come between the delete and its removal) and one from a service long gone.
    ip('-n', c.node(2), 'addr', 'add', '10.96.0.11/32', 'dev', VIP_LINK)
    ip('-n', c.node(2), 'addr', 'add', '10.96.0.99/32', 'dev', VIP_LINK)

    const restarted = await startDaemon(c, { redisUrl: redis.url, node: 2, stateFile: stateFile(2) })
    daemons.set(2, restarted)
    t.match(restarted.stdout(), /serving the state file/, 'it serves the state file (Redis is down)')
    t.ok(await until(async () => (await client.tcp(N2, 30080)).ok), "node2's nodePort serves again")
    const np = await client.tcpSeries(N2, 30080, 6)
    t.ok(roundRobin(np, 3), `through node2: the 3 pods of the last revision in turn: ${np.join(' ')}`)
    const local = await onNode2.tcpSeries(WEB.clusterIP, 80, 3)
    t.same([...new Set(local)].sort(), ['web-1a', 'web-1b', 'web-2a'], `the clusterIP on node2 itself: ${local.join(' ')}`)

    const want = ['10.100.0.10/32', '10.96.0.10/32']
    t.ok(await until(() => vips(2).join() === want.join()), `leftovers pruned: ${vips(2).join(' ')}`)
    t.same(vips(2), want, `${VIP_LINK} on node2 holds exactly what the state needs`)
    const seen = allAddresses(c.node(2)).filter((a) => ['10.96.0.10', '10.100.0.10'].includes(a.address))
    t.same(seen.map((a) => `${a.link} ${a.address}`).sort(), [`${VIP_LINK} 10.100.0.10`, `${VIP_LINK} 10.96.0.10`], 'each VIP once, on one link')
  })

  t.test('svcproxy cleanup --vip-interface removes the link and its addresses', async (t) => {
    await (daemons.get(1) as NsProcess).kill('SIGKILL')
    const r = await runIn(c.node(1), svcproxyArgv('cleanup', '--vip-interface', VIP_LINK))
    t.equal(r.code, 0, `cleanup exits 0: ${r.stderr}`)
    t.equal(linkAddresses(c.node(1), VIP_LINK), null, `no ${VIP_LINK} on node1 any more`)
  })

  t.teardown(() => {
    // What the daemons logged, when something failed (or SVCP_NODE_LOGS=1): the why is usually there.
    if (t.passing() && process.env.SVCP_NODE_LOGS !== '1') return
    for (const [n, d] of daemons) console.error(`--- node${n} daemon (pid ${d.pid}) stdout:\n${d.stdout().slice(-6000)}\n--- stderr:\n${d.stderr().slice(-3000)}`)
  })

  t.test('everything the test made is removed', async (t) => {
    await c.destroy()
    t.same(c.remaining(), [], 'no namespace left')
    t.comment(`whole run: ${Date.now() - started} ms`)
  })
}
