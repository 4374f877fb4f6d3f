import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'

const root = new URL('..', import.meta.url).pathname

async function sources (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await sources(p))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

t.test('no eval or new Function anywhere in lib/ or bin/', async (t) => {
  const files = [...await sources(join(root, 'lib')), ...await sources(join(root, 'bin'))]
  t.ok(files.length > 20, `${files.length} source files read`)
  for (const f of files) {
    const text = (await readFile(f, 'utf8')).split('\n').filter((l) => !l.trim().startsWith('//') && !l.trim().startsWith('*')).join('\n')
    t.notMatch(text, /\beval\s*\(|new\s+Function\s*\(/, f)
  }
})

t.test('admin listeners default to loopback', async (t) => {
  const { FLAGS } = await import('../lib/cli/flags.js')
  t.match(String(FLAGS['healthz-bind-address']?.default), /^127\.0\.0\.1:/)
  t.match(String(FLAGS['metrics-bind-address']?.default), /^127\.0\.0\.1:/)
})
