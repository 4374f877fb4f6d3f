import { spawn } from 'node:child_process'
import { once } from 'node:events'
import t from 'tap'

const root = new URL('..', import.meta.url).pathname

// The scale bench runs (tiny counts) and prints every row with a number: not that it is fast.
t.test('bench/scale --quick prints every row', async (t) => {
  const child = spawn(process.execPath, [`${root}dist/bench/scale.js`, '--quick'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0)
  for (const row of ['table only', 'apply and serve', 'proxy RSS after apply', 'one endpoint change', 'idle pairs open', 'proxy RSS per idle pair']) {
    t.match(out, new RegExp(`${row}.*\\d`), row)
  }
  t.match(out, /idle pairs open through the proxy\s+200\b/, 'every idle pair was open at once')
})
