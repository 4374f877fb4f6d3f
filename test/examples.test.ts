import { readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import t from 'tap'
import { fetchAll, listen, testProxy } from './helpers.js'

const root = new URL('..', import.meta.url).pathname
const load = async (f: string): Promise<unknown> => JSON.parse(await readFile(`${root}examples/${f}`, 'utf8')) as unknown

/** A backend on a pod's own address and container port that answers with its name. */
async function pod (t: { teardown: (fn: () => unknown) => void }, ip: string, port: number, name: string): Promise<boolean> {
  const s = createServer((c) => { c.on('error', () => {}); c.end(name) })
  try {
    await listen(s, ip, port)
  } catch {
    return false
  }
  t.teardown(() => s.close())
  return true
}

t.test('gsw-k8s-3-service: selector app=gswk8sApp, 80 -> 8080, served by its pods in turn', async (t) => {
  const ok = (await pod(t, '127.0.10.1', 8080, 'pod-1')) && (await pod(t, '127.0.10.2', 8080, 'pod-2'))
  if (!ok) { t.comment('skipped: 127.0.10.x:8080 is taken on this machine'); return }
  const p = testProxy(t)
  await p.apply(await load('gsw-k8s-3-service.json'), 'examples/gsw-k8s-3-service.json')
  const st = p.status()
  t.equal(st.length, 1)
  t.same(st[0]?.endpoints.map((e) => e.endpoint), ['127.0.10.1:8080', '127.0.10.2:8080'])
  const a = p.address('default/gsw-k8s-3-service', 80)
  t.same([await fetchAll(a.address, a.port), await fetchAll(a.address, a.port), await fetchAll(a.address, a.port)], ['pod-1', 'pod-2', 'pod-1'])
})

t.test('httpd-svc in kube-system: selector run=httpd, 8080 -> 80', async (t) => {
  const ok = (await pod(t, '127.0.11.1', 80, 'httpd-1')) && (await pod(t, '127.0.11.2', 80, 'httpd-2'))
  if (!ok) { t.comment('skipped: 127.0.11.x:80 cannot be bound (privileges or taken)'); return }
  const p = testProxy(t)
  await p.apply(await load('httpd-svc.json'), 'examples/httpd-svc.json')
  const a = p.address('kube-system/httpd-svc', 8080)
  t.same([await fetchAll(a.address, a.port), await fetchAll(a.address, a.port)], ['httpd-1', 'httpd-2'])
})

t.test('mysql: no selector, hand-written Endpoints; it loads and nothing dials it', async (t) => {
  const p = testProxy(t)
  const dialed: string[] = []
  p.on('endpoint', (e) => dialed.push(e.endpoint))
  p.on('dialFailed', (e) => dialed.push(e.endpoint))
  await p.apply(await load('mysql.json'), 'examples/mysql.json')
  const st = p.status()
  t.equal(st[0]?.name, 'mysql')
  t.same(st[0]?.endpoints.map((e) => e.endpoint), ['192.168.66.109:3306'])
  t.equal(st[0]?.frontends[0]?.state, 'listening')
  t.same(dialed, [], 'no connection was attempted')
})
