// Property/fuzz test of manifest validation (issue #8). A seeded generator builds valid documents
// and mutates them; the oracle: a valid document is always accepted, a document mutated into a
// known-invalid form is always refused, and nothing ever throws anything but ValidationError.
// Reproduce a failure with FUZZ_SEED=<seed printed below>; FUZZ_DOCS sets the count.
import { closeSync, mkdtempSync, openSync, ftruncateSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { mulberry32 } from './helpers.js'
import { FileError, ValidationError, parseDocument, parseObjects, readDocumentFile } from '../lib/index.js'
import { MAX_DOCUMENT_BYTES, MAX_STRING_BYTES } from '../lib/model/index.js'
import { decodeRecord } from '../lib/store/records.js'

const SEED = Number(process.env.FUZZ_SEED ?? (Date.now() % 2 ** 31))
const DOCS = Number(process.env.FUZZ_DOCS ?? 100_000)

const rand = mulberry32(SEED)
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1))
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T
const chance = (p: number): boolean => rand() < p

type J = null | boolean | number | string | J[] | { [k: string]: J }
type Obj = { [k: string]: J }

const LOWER = 'abcdefghijklmnopqrstuvwxyz'
const ALNUM = `${LOWER}0123456789`
function label (max = 20): string {
  let s = pick([...LOWER])
  const n = int(0, max - 2)
  for (let i = 0; i < n; i++) s += chance(0.1) && i < n - 1 ? '-' : pick([...ALNUM])
  return s + (n > 0 ? pick([...ALNUM]) : '')
}
function ianaName (): string { let s = pick([...LOWER]); for (let i = int(0, 8); i > 0; i--) s += pick([...ALNUM]); return s }
// Never 169.254/16: link-local externalIPs and endpoints are refused, as the API server refuses them.
const ipv4 = (): string => { const a = int(1, 223); return `${a}.${a === 169 ? int(0, 253) : int(0, 255)}.${int(0, 255)}.${int(1, 254)}` }
const ipv6 = (): string => `fd00::${int(1, 0xffff).toString(16)}:${int(0, 0xffff).toString(16)}`

let uniq = 0
function validService (): Obj {
  const type = pick(['ClusterIP', 'ClusterIP', 'NodePort', 'LoadBalancer'] as const)
  const nports = int(1, 3)
  const used = new Set<string>()
  const ports: J[] = []
  for (let i = 0; i < nports; i++) {
    const protocol = pick(['TCP', 'UDP'])
    let port = int(1, 65535)
    while (used.has(`${port}/${protocol}`)) port = int(1, 65535)
    used.add(`${port}/${protocol}`)
    const p: Obj = { port, protocol }
    if (nports > 1 || chance(0.3)) p.name = `p${i}-${label(8)}`
    if (chance(0.5)) p.targetPort = chance(0.5) ? int(1, 65535) : ianaName()
    if (type !== 'ClusterIP' && chance(0.5)) p.nodePort = int(30000, 32767)
    ports.push(p)
  }
  const spec: Obj = { type, ports }
  if (chance(0.7)) spec.clusterIP = chance(0.8) ? `10.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}` : ''
  if (chance(0.3)) spec.selector = { app: label() }
  if (chance(0.2)) { spec.sessionAffinity = 'ClientIP'; if (chance(0.5)) spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: int(1, 86400) } } }
  if (chance(0.2)) spec.externalIPs = [chance(0.8) ? ipv4() : ipv6()]
  if (chance(0.2)) spec.externalTrafficPolicy = pick(['Cluster', 'Local'])
  const annotations: Obj = {}
  if (chance(0.3)) annotations['svcproxy.io/max-connections'] = String(int(0, 100000))
  if (chance(0.2)) annotations['svcproxy.io/load-balancer'] = pick(['random', 'round-robin'])
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: `s${uniq++}-${label(10)}`, namespace: label(10), annotations }, spec }
}

function validEndpoints (svc: Obj): Obj {
  const meta = svc.metadata as Obj
  const nports = int(1, 2)
  const ports: J[] = []
  for (let i = 0; i < nports; i++) ports.push({ port: int(1, 65535), protocol: pick(['TCP', 'UDP']), ...(nports > 1 ? { name: `e${i}` } : {}) })
  const subsets: J[] = []
  for (let i = int(0, 2); i > 0; i--) subsets.push({ addresses: Array.from({ length: int(1, 3) }, () => ({ ip: chance(0.9) ? ipv4() : ipv6() })), ports })
  return { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: meta.name ?? null, namespace: meta.namespace ?? null }, subsets }
}

const clone = <T extends J>(v: T): T => structuredClone(v)
const specOf = (svc: Obj): Obj => svc.spec as Obj
const portsOf = (svc: Obj): Obj[] => specOf(svc).ports as Obj[]

/** Mutations that make a valid Service invalid, each for a reason the validator must catch. */
const BREAK_SERVICE: Array<[string, (s: Obj) => void]> = [
  ['port out of range', (s) => { (portsOf(s)[0] as Obj).port = pick([0, -1, 65536, 1.5, 1e9, '80', true, [], {}]) }],
  ['port missing', (s) => { delete (portsOf(s)[0] as Obj).port }],
  ['bad clusterIP', (s) => { specOf(s).clusterIP = pick(['300.1.1.1', '1.2.3', 'abc', '10.0.0.1/8', '::g', '1.2.3.4.5', ' 10.0.0.1', '0.0.0.0', '::', '239.0.0.1', 'ff02::1']) }],
  ['bad name', (s) => { (s.metadata as Obj).name = pick(['Bad_Name', '', '-x', 'a'.repeat(64), 123, '1abc', 'a.b']) }],
  ['bad namespace', (s) => { (s.metadata as Obj).namespace = pick(['UPPER', 'a_b', 'x'.repeat(64), 7]) }],
  ['metadata dropped', (s) => { delete s.metadata }],
  ['bad protocol', (s) => { (portsOf(s)[0] as Obj).protocol = pick(['SCTP', 'tcp', 'HTTP', 6, '']) }],
  ['bad type', (s) => { specOf(s).type = pick(['Foo', 'clusterip', 3]) }],
  ['bad sessionAffinity', (s) => { specOf(s).sessionAffinity = pick(['Sticky', 'clientip', false]) }],
  ['bad affinity timeout', (s) => { specOf(s).sessionAffinity = 'ClientIP'; specOf(s).sessionAffinityConfig = { clientIP: { timeoutSeconds: pick([0, 86401, -3, 2.5, '60']) } } }],
  ['duplicate port', (s) => { const ps = portsOf(s); ps.push(clone(ps[0] as Obj)) }],
  ['bad max-connections annotation', (s) => { ((s.metadata as Obj).annotations as Obj)['svcproxy.io/max-connections'] = pick(['abc', '-1', '1e3', '99999999', '']) }],
  ['bad targetPort', (s) => { (portsOf(s)[0] as Obj).targetPort = pick([70000, -2, 'Bad Name', 'a--b', 'x'.repeat(16), 1.5]) }],
  ['nodePort on ClusterIP', (s) => { specOf(s).type = 'ClusterIP'; (portsOf(s)[0] as Obj).nodePort = int(30000, 32767) }],
  ['bad externalIP', (s) => { specOf(s).externalIPs = [pick(['not-an-ip', '1.2.3', '', 5, '0.0.0.0', '::', '169.254.0.9', 'fe80::9', '224.0.0.9', '239.1.1.1'])] }],
  ['spec retyped', (s) => { s.spec = pick(['spec', 5, [], true]) }],
  ['ports retyped', (s) => { specOf(s).ports = pick(['80', 80, { port: 80 }]) }],
  ['no ports', (s) => { specOf(s).ports = [] }],
  ['bad apiVersion', (s) => { s.apiVersion = pick(['v2', 'apps/v1', '', 1]) }],
  ['label value retyped', (s) => { (s.metadata as Obj).labels = { a: pick([1, true, null === null ? [] : 0, {}]) } }],
  ['unnamed port among several', (s) => { const ps = portsOf(s); ps.push({ port: 1, protocol: 'SCTP' }); for (const p of ps) delete p.name }],
]

const BREAK_ENDPOINTS: Array<[string, (e: Obj) => void]> = [
  ['bad endpoint IP', (e) => { e.subsets = [{ addresses: [{ ip: pick(['999.1.1.1', 'host', '', '1.2.3', '0.0.0.0', '::', '169.254.169.254', 'fe80::1']) }], ports: [{ port: 80 }] }] }],
  ['bad endpoint port', (e) => { e.subsets = [{ addresses: [{ ip: '10.0.0.1' }], ports: [{ port: pick([0, 65536, 'x', -1]) }] }] }],
  ['subsets retyped', (e) => { e.subsets = pick(['x', 3, { a: 1 }]) }],
]

/** Random values for structural mutation: anything JSON can carry, and some huge ones. */
function junk (): J {
  switch (int(0, 9)) {
    case 0: return null
    case 1: return chance(0.5)
    case 2: return pick([0, -1, 1.5, 65536, 1e308, -0, Number.MAX_SAFE_INTEGER])
    case 3: return label()
    case 4: return pick(['', ' ', '\u0000', '__proto__', 'constructor', '\ud800', 'None', '127.0.0.1'])
    case 5: return []
    case 6: return {}
    case 7: return [junk(), junk()]
    case 8: return { [pick(['__proto__', 'constructor', 'port', 'name', 'x'])]: junk() }
    default: return 'x'.repeat(int(0, 300))
  }
}

/** Picks a random container (object or array) inside v and changes, deletes or retypes one member. */
function mutateRandomly (root: Obj): void {
  const containers: Array<Obj | J[]> = []
  const walk = (v: J): void => {
    if (Array.isArray(v)) { containers.push(v); v.forEach(walk) } else if (v !== null && typeof v === 'object') { containers.push(v); Object.values(v).forEach(walk) }
  }
  walk(root)
  for (let n = int(1, 3); n > 0; n--) {
    const c = pick(containers)
    if (Array.isArray(c)) {
      const op = int(0, 2)
      if (op === 0 && c.length > 0) c.splice(int(0, c.length - 1), 1)
      else if (op === 1 && c.length > 0) c.push(clone(c[int(0, c.length - 1)] as J))
      else c.push(junk())
    } else {
      const keys = Object.keys(c)
      const op = int(0, 2)
      if (op === 0 && keys.length > 0) delete c[pick(keys)]
      else if (op === 1 && keys.length > 0) c[pick(keys)] = junk()
      else c[pick(['kind', 'metadata', 'spec', 'x', 'ports', 'name', 'items', 'subsets'])] = junk()
    }
  }
}

/** Byte-level damage to JSON text: flips, cuts, insertions, duplications. */
function mutateText (s: string): string {
  switch (int(0, 4)) {
    case 0: { const i = int(0, s.length - 1); return s.slice(0, i) + String.fromCharCode(int(0, 127)) + s.slice(i + 1) }
    case 1: return s.slice(0, int(0, s.length))
    case 2: { const i = int(0, s.length); return s.slice(0, i) + pick(['{', '}', '[', ']', ',', ':', '"', '\\', '\u0000', 'null', '-', '1e999', '\ufeff']) + s.slice(i) }
    case 3: { const i = int(0, s.length); const j = Math.min(s.length, i + int(1, 40)); return s.slice(0, j) + s.slice(i, j) + s.slice(j) }
    default: return `\ufeff${s}`
  }
}

type Outcome = 'accepted' | 'rejected'
function outcome (fn: () => unknown): Outcome | Error {
  try {
    fn()
    return 'accepted'
  } catch (err) {
    return err instanceof ValidationError ? 'rejected' : (err as Error)
  }
}

t.test(`fuzz: ${DOCS} generated and mutated documents`, (t) => {
  t.comment(`seed ${SEED} (FUZZ_SEED=${SEED} to replay)`)
  const stats = { valid: 0, broken: 0, random: 0, text: 0, records: 0, randomAccepted: 0, textAccepted: 0 }
  const failures: string[] = []
  const fail = (i: number, what: string, doc: unknown): void => {
    if (failures.length < 5) failures.push(`#${i} ${what}: ${JSON.stringify(doc).slice(0, 600)}`)
  }
  for (let i = 0; i < DOCS; i++) {
    const svc = validService()
    const ep = validEndpoints(svc)
    const bucket = i % 10
    if (bucket <= 2) {
      stats.valid++
      // Unknown fields are ignored, as the API server's decoder would (lenient mode) do.
      if (chance(0.3)) specOf(svc)[`x${label(5)}`] = junk()
      const r = outcome(() => parseObjects([svc, ep], '<fuzz>'))
      if (r !== 'accepted') fail(i, `valid document ${r instanceof Error ? `threw ${r.name}: ${r.message}` : 'refused'}`, [svc, ep])
      if (bucket === 0) {
        stats.records++
        const meta = svc.metadata as Obj
        const key = `Service/${String(meta.namespace)}/${String(meta.name)}`
        const rr = outcome(() => decodeRecord(key, JSON.stringify(svc)))
        if (rr !== 'accepted') fail(i, 'valid Redis record refused', svc)
        const bad = clone(svc)
        pick(BREAK_SERVICE)[1](bad)
        const rb = outcome(() => decodeRecord(key, JSON.stringify(bad)))
        if (rb !== 'rejected') fail(i, `invalid Redis record ${rb === 'accepted' ? 'accepted' : 'threw'}`, bad)
      }
    } else if (bucket <= 6) {
      stats.broken++
      let what: string
      if (chance(0.8)) { const [name, m] = pick(BREAK_SERVICE); what = name; m(svc) } else { const [name, m] = pick(BREAK_ENDPOINTS); what = name; m(ep) }
      // Text or values: both entry points.
      const r = chance(0.5) ? outcome(() => parseObjects([svc, ep], '<fuzz>')) : outcome(() => parseDocument(JSON.stringify([svc, ep]), '<fuzz>'))
      if (r !== 'rejected') fail(i, `${what}: ${r === 'accepted' ? 'accepted' : `threw ${(r as Error).name}: ${(r as Error).message}`}`, [svc, ep])
    } else if (bucket <= 8) {
      stats.random++
      const doc: Obj = chance(0.2) ? { apiVersion: 'v1', kind: 'List', items: [svc, ep] } : { items: [svc, ep] }
      mutateRandomly(chance(0.5) ? svc : ep)
      const r = outcome(() => parseObjects(doc.kind === 'List' ? [doc] : [svc, ep], '<fuzz>'))
      if (r instanceof Error) fail(i, `threw ${r.name}: ${r.message}`, [svc, ep])
      else if (r === 'accepted') stats.randomAccepted++
    } else {
      stats.text++
      let text = JSON.stringify([svc, ep])
      for (let n = int(1, 3); n > 0; n--) text = mutateText(text)
      const r = outcome(() => parseDocument(text, '<fuzz>'))
      if (r instanceof Error) fail(i, `threw ${r.name}: ${r.message}`, text)
      else if (r === 'accepted') stats.textAccepted++
    }
  }
  t.comment(JSON.stringify(stats))
  t.same(failures, [], `no oracle violation in ${DOCS} documents (seed ${SEED})`)
  t.ok(stats.valid + stats.broken + stats.random + stats.text === DOCS)
  t.end()
})

t.test('oversized inputs are refused with a clear error', async (t) => {
  // A document over 64 MiB, as text: refused before parsing.
  const big = `[${' '.repeat(MAX_DOCUMENT_BYTES)}]`
  t.throws(() => parseDocument(big, 'big.json'), { name: 'ValidationError', message: /64 MiB/ })
  // And as a file (sparse: nothing is written): refused by size before reading.
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-fuzz-'))
  const file = join(dir, 'huge.json')
  const fd = openSync(file, 'w')
  ftruncateSync(fd, MAX_DOCUMENT_BYTES + 1)
  closeSync(fd)
  await t.rejects(readDocumentFile(file), FileError)
  await t.rejects(readDocumentFile(file), { message: /64 MiB/ })
  // A string field over 1 MiB, anywhere in an object.
  const svc = validService()
  ;(svc.metadata as Obj).labels = { big: 'x'.repeat(MAX_STRING_BYTES + 1) }
  t.throws(() => parseObjects([svc], 'huge-label'), { name: 'ValidationError', message: /at most 1 MiB/ })
  const svc2 = validService()
  specOf(svc2).externalName = 'y'.repeat(MAX_STRING_BYTES + 10)
  t.throws(() => parseDocument(JSON.stringify(svc2), 'huge-field.json'), { message: /at most 1 MiB/ })
  // Just under the string limit is fine where the field accepts anything.
  const svc3 = validService()
  ;(svc3.metadata as Obj).annotations = { note: 'z'.repeat(MAX_STRING_BYTES - 16) }
  t.doesNotThrow(() => parseObjects([svc3], 'near-limit'))
})
