// The public API is chosen, not accumulated: every name lib/index.ts exports has a section in
// docs/api.md (with an example), and the page documents nothing that is not exported.
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import * as api from '../lib/index.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const index = readFileSync(join(root, 'lib', 'index.ts'), 'utf8')
const doc = readFileSync(join(root, 'docs', 'api.md'), 'utf8')

function exported (typeOnly: boolean): string[] {
  const re = typeOnly ? /export type \{([^}]+)\}/g : /export \{([^}]+)\}/g
  return [...index.matchAll(re)].flatMap((m) => (m[1] ?? '').split(',').map((s) => s.trim().split(/\s+as\s+/).pop() ?? '').filter((s) => s !== ''))
}

const values = exported(false).sort()
const types = exported(true).sort()
/** `### \`name\`` headings, each followed by its section up to the next heading. */
const sections = new Map([...doc.matchAll(/^### `([A-Za-z_][\w]*)`\n([\s\S]*?)(?=^#{2,3} |$(?![\s\S]))/gm)].map((m) => [m[1] ?? '', m[2] ?? '']))

t.test('the runtime exports are exactly the value names index.ts lists', async (t) => {
  t.same(Object.keys(api).sort(), values)
})

t.test('every export has a section in docs/api.md, and every section an export', async (t) => {
  const all = [...values, ...types].sort()
  t.same(all.filter((n) => !sections.has(n)), [], 'exported but not documented')
  t.same([...sections.keys()].filter((n) => !all.includes(n)).sort(), [], 'documented but not exported')
})

t.test('every documented value has an example', async (t) => {
  t.same(values.filter((n) => !/```(ts|js|sh)\n/.test(sections.get(n) ?? '')), [], 'add a ```ts example to these sections')
})
