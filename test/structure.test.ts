// The layout rules of docs/architecture.md, held against the code: no import cycle in lib/ (type-only
// imports included), lower layers never import upper ones, no lib file past 400 lines, Node internals
// reached only from lib/internals/, and every lib file named in docs/architecture.md.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const lib = join(root, 'lib')

/** Layers from the bottom up; a file may import its own layer and those below, never above. */
export const LAYERS: string[][] = [
  ['errors.ts', 'defaults.ts', 'util'],
  ['model'],
  ['table'],
  ['balancer', 'faults'],
  ['internals', 'frontend', 'host'],
  ['tcp', 'udp'],
  ['dataplane'],
  ['api'],
  ['store'],
  ['sources'],
  ['admin', 'toxiproxy'],
  ['cli'],
  ['index.ts'],
]

function walk (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [])
}

const files = walk(lib).map((f) => relative(lib, f)).sort()
const source = new Map(files.map((f) => [f, readFileSync(join(lib, f), 'utf8')]))

function importsOf (file: string): string[] {
  const out: string[] = []
  const re = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g
  for (const m of (source.get(file) ?? '').matchAll(re)) {
    const spec = m[1] ?? m[2] ?? ''
    out.push(relative(lib, resolve(lib, dirname(file), spec)).replace(/\.js$/, '.ts'))
  }
  return out
}

const graph = new Map(files.map((f) => [f, importsOf(f)]))

function layerOf (file: string): number {
  const top = file.split('/')[0] ?? file
  const i = LAYERS.findIndex((l) => l.includes(top))
  return i
}

t.test('every lib file belongs to a layer', async (t) => {
  t.same(files.filter((f) => layerOf(f) === -1), [], 'add new folders to LAYERS and to docs/architecture.md')
})

t.test('imports resolve to lib files', async (t) => {
  const missing = [...graph].flatMap(([f, deps]) => deps.filter((d) => !source.has(d)).map((d) => `${f} -> ${d}`))
  t.same(missing, [])
})

t.test('no import cycle in lib/ (type-only imports included)', async (t) => {
  const cycles: string[] = []
  const state = new Map<string, 1 | 2>()
  const stack: string[] = []
  const visit = (f: string): void => {
    state.set(f, 1)
    stack.push(f)
    for (const d of graph.get(f) ?? []) {
      if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].join(' -> '))
      else if (state.get(d) === undefined) visit(d)
    }
    stack.pop()
    state.set(f, 2)
  }
  for (const f of files) if (state.get(f) === undefined) visit(f)
  t.same(cycles, [])
})

t.test('lower layers never import upper ones', async (t) => {
  const up = [...graph].flatMap(([f, deps]) => deps.filter((d) => layerOf(d) > layerOf(f)).map((d) => `${f} -> ${d}`))
  t.same(up, [])
})

t.test('no lib file over 400 lines', async (t) => {
  const long = files.map((f) => [f, (source.get(f) ?? '').split('\n').length] as const).filter(([, n]) => n > 400)
  t.same(long, [])
})

t.test('Node internals are reached only from lib/internals/', async (t) => {
  const reach = /process\.binding|\b_handle\b|\.description\b/
  const outside = files.filter((f) => !f.startsWith('internals/') && reach.test((source.get(f) ?? '').replace(/^\s*(\/\/|\*).*$/gm, '')))
  t.same(outside, [])
})

t.test('importing svcproxy calls no internal binding (DEP0111 only once a uv-engine proxy starts)', async (t) => {
  const entry = JSON.stringify(join(root, 'lib', 'index.ts'))
  // A child with the TypeScript loader only, whose process.binding records the modules asked for.
  // (Checking for the DEP0111 warning itself does not work under tap: its hooks print it first.)
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'))
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/TAP|NODE_OPTIONS/.test(k)))
  const spy = 'const asked = []; const real = process.binding; process.binding = (n) => { asked.push(n); return real.call(process, n) };'
  const run = (code: string): string => {
    const r = spawnSync(process.execPath, [...loader, '--input-type=module', '-e', `${spy} ${code}; console.log(JSON.stringify(asked))`], { encoding: 'utf8', env })
    t.equal(r.status, 0, r.stderr)
    return r.stdout.trim().split('\n').pop() ?? ''
  }
  t.equal(run(`await import(${entry})`), '[]', 'import alone')
  // The same check can fail: creating a proxy with the uv engine does load the bindings.
  t.match(run(`const m = await import(${entry}); const p = m.createProxy(); await p.close()`), /tcp_wrap/, 'createProxy()')
})

t.test('docs/architecture.md names every lib file', async (t) => {
  const doc = readFileSync(join(root, 'docs', 'architecture.md'), 'utf8')
  t.same(files.filter((f) => !doc.includes(`lib/${f}`) && !doc.includes(`\`${f}\``)), [], 'name each file as lib/<path> in docs/architecture.md')
})
