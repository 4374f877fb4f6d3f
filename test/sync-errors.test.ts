// svcproxy_sync_errors_total counts each rejected write once (issue 18, defect 2): a rejected
// manifest edit is one, however many times the file source's settle window re-read it.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { watchConfigFile } from '../lib/index.js'
import { svcWithEndpoints, testProxy } from './helpers.js'

const list = (items: unknown[]): string => JSON.stringify({ apiVersion: 'v1', kind: 'List', items })
const good = list(svcWithEndpoints('web', '127.50.9.1', 80, [{ ip: '127.0.9.1', port: 8080 }]))

/** A watched file whose load verdicts the test waits on, one at a time. */
async function watched (t: { teardown: (fn: () => unknown) => void }): Promise<{ file: string, proxy: ReturnType<typeof testProxy>, edit: (text: string) => Promise<boolean>, poke: () => Promise<boolean>, reload: () => Promise<boolean> }> {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-syncerr-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'services.json')
  await writeFile(file, good)
  const proxy = testProxy(t)
  let verdict: ((ok: boolean) => void) | null = null
  const src = await watchConfigFile(file, proxy, { debounceMs: 20, pollIntervalMs: 100, onSync: (ok) => { verdict?.(ok) } })
  t.teardown(() => src.close())
  const next = async (): Promise<boolean> => await new Promise((resolve) => { verdict = resolve })
  return {
    file,
    proxy,
    edit: async (text) => { const v = next(); await writeFile(file, text); return await v },
    // A directory event that is not an edit (a ConfigMap-style `..` entry): the file is read again.
    poke: async () => { const v = next(); await writeFile(join(dir, `..stray${Math.random()}`), 'x'); return await v },
    reload: async () => await src.reload(),
  }
}

t.test('8 rejected manifest edits count 8 sync errors', async (t) => {
  const w = await watched(t)
  t.equal(w.proxy.syncStats.errors, 0)
  const bad = [
    '{"apiVersion": "v1", "kind": "List", "items": [',
    list([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { clusterIP: 'bogus', ports: [{ port: 80 }] } }]),
    list([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { clusterIP: '0.0.0.0', ports: [{ port: 80 }] } }]),
    list([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 0 }] } }]),
    'apiVersion: v1\nkind: Service\n',
    '',
    list([{ apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'web' }, subsets: [{ addresses: [{ ip: '1.2.3' }] }] }]),
    list([{ apiVersion: 'v9', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } }]),
  ]
  for (const [i, text] of bad.entries()) {
    t.equal(await w.edit(text), false, `edit ${i + 1} rejected`)
    t.equal(w.proxy.syncStats.errors, i + 1, `counted: ${i + 1}`)
  }
  t.equal(await w.poke(), false, 'the last bad edit, read again on a stray event, is still rejected')
  t.equal(w.proxy.syncStats.errors, 8, 'but it is the same edit: not counted again')
  t.equal(await w.edit(good), true, 'a good edit is applied')
  t.equal(w.proxy.syncStats.errors, 8, 'and counts nothing')
})

t.test('a clusterIP conflict counts one sync error, not one per re-read in the settle window', async (t) => {
  const w = await watched(t)
  // Valid objects each, refused together by the allocator: two services on one clusterIP:port.
  const conflict = list([...svcWithEndpoints('web', '127.50.9.1', 80, []), ...svcWithEndpoints('web2', '127.50.9.1', 80, [])])
  t.equal(await w.edit(conflict), false, 'the conflict is rejected')
  t.equal(w.proxy.syncStats.errors, 1, 'once')
  t.equal(await w.reload(), false, 'SIGHUP re-applies the file: rejected again')
  t.equal(w.proxy.syncStats.errors, 2, 'an explicit reload is a new sync attempt: one more')
  t.equal(await w.edit(good), true)
  t.equal(w.proxy.syncStats.errors, 2)
})

t.test('the library counts each rejected write once', async (t) => {
  const p = testProxy(t)
  await t.rejects(p.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { clusterIP: '::', ports: [{ port: 80 }] } }))
  t.equal(p.syncStats.errors, 1)
  const err = await p.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { ports: [] } }).catch((e: unknown) => e)
  t.equal(p.syncStats.errors, 2)
  p.syncStats.fail(err)
  t.equal(p.syncStats.errors, 2, 'a source reporting the same failure again does not count it twice')
})
