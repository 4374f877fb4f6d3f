// Summarizes a V8 .cpuprofile (from `run.js --profile DIR`): self time by function and by area
// (svcproxy's lib/, Node's internals by module, GC, native, idle). Usage:
//   node dist/bench/profile-top.js bench/results/profiles/svcproxy.cpuprofile [top=25]
import { readFileSync } from 'node:fs'

interface Node { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: Node[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

function area (url: string, fn: string): string {
  if (url === '') return fn.startsWith('(') ? fn : '(native)'
  const m = /node:internal\/([a-z_/]+)|node:([a-z_]+)/.exec(url)
  if (m !== null) return `node:${m[1] ?? m[2] ?? ''}`
  if (url.includes('/lib/')) return `svcproxy ${url.slice(url.lastIndexOf('/lib/') + 1)}`
  if (url.includes('/node_modules/')) return url.slice(url.lastIndexOf('/node_modules/') + 14).split('/')[0] ?? url
  return url.slice(url.lastIndexOf('/') + 1)
}

function main (): void {
  const file = process.argv[2]
  if (file === undefined) { process.stderr.write('usage: profile-top FILE.cpuprofile [top]\n'); process.exit(2) }
  const top = Number(process.argv[3] ?? 25)
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
  const byId = new Map<number, Node>()
  for (const n of p.nodes) byId.set(n.id, n)
  const self = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0))
  }
  const fns = new Map<string, number>()
  const areas = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const [id, us] of self) {
    const n = byId.get(id)
    if (n === undefined) continue
    const { functionName, url, lineNumber } = n.callFrame
    if (functionName === '(idle)') { idle += us; continue }
    total += us
    const where = url === '' ? '' : ` ${url.replace(/^.*\/(lib|node_modules)\//, '$1/').replace(/^file:\/\/.*\//, '')}:${lineNumber + 1}`
    const key = `${functionName || '(anonymous)'}${where}`
    fns.set(key, (fns.get(key) ?? 0) + us)
    const a = area(url, functionName)
    areas.set(a, (areas.get(a) ?? 0) + us)
  }
  const pct = (us: number): string => `${((us / total) * 100).toFixed(1).padStart(5)}%`
  const ms = (us: number): string => `${(us / 1000).toFixed(0).padStart(7)} ms`
  process.stdout.write(`${file}: ${(total / 1000).toFixed(0)} ms on CPU in JS/native samples, ${(idle / 1000).toFixed(0)} ms idle\n\nby area (self time)\n`)
  for (const [k, us] of [...areas].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${ms(us)} ${pct(us)}  ${k}\n`)
  process.stdout.write('\nby function (self time)\n')
  for (const [k, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${ms(us)} ${pct(us)}  ${k}\n`)
}

main()
