// docs/testing.md's node:test recipes run as they are written: its setup block and every block
// marked `// testing.md: node:test`, in one file, under `node --test` (svcproxy imported from
// lib/, through the TypeScript loader this test runs under). A recipe the API no longer matches
// fails here.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))

t.test('the node:test recipes of docs/testing.md pass', async (t) => {
  const doc = readFileSync(join(root, 'docs', 'testing.md'), 'utf8')
  const blocks = [...doc.matchAll(/```js\n(\/\/ testing\.md: (setup|node:test)\n[\s\S]*?)```/g)]
  const setup = blocks.filter((b) => b[2] === 'setup')
  const recipes = blocks.filter((b) => b[2] === 'node:test')
  t.equal(setup.length, 1, 'one setup block')
  t.equal(recipes.length, 4, 'four recipes: a dead endpoint, a slow link, a flapping endpoint, UDP loss')
  const code = [...setup, ...recipes].map((b) => b[1]).join('\n').replace(/from 'svcproxy'/g, `from ${JSON.stringify(join(root, 'lib', 'index.ts'))}`)
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-testing-doc-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'recipes.test.mjs')
  writeFileSync(file, code)
  const child = spawn(process.execPath, [...process.execArgv, '--test', '--test-reporter=spec', file], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  child.stderr.on('data', (c: Buffer) => { out += c.toString() })
  const [status] = await once(child, 'exit') as [number | null]
  t.equal(status, 0, 'node --test passes every recipe', { output: out })
  for (const name of ['a dead endpoint', 'a slow link', 'a flapping endpoint', 'UDP loss']) t.match(out, new RegExp(`✔ ${name}`), `${name} ran and passed`)
})
