// The balancer without sockets: each row is a script of steps against one Balancer with a fake
// clock and a seeded random source, and every step states what it must observe.
import t from 'tap'
import { mulberry32 } from './helpers.js'
import { Backend } from '../lib/balancer/backend.js'
import { ALGORITHMS, type Algorithm, Balancer, isAlgorithm } from '../lib/balancer/balancer.js'
import { MaglevTable, hashClient, hashString, maglevSize } from '../lib/balancer/maglev.js'

/** Endpoints by letter: a = 10.0.0.1:80, b = 10.0.0.2:80, ... */
const NAMES = 'abcdefgh'
function backend (name: string): Backend {
  return new Backend(`10.0.0.${NAMES.indexOf(name) + 1}`, 80)
}
function nameOf (b: Backend | undefined): string | undefined {
  return b === undefined ? undefined : NAMES[Number(b.ip.split('.')[3]) - 1]
}


type Step =
  /** pick(ip, reset) from the balancer's endpoints, or from `from` (traffic policy Local candidates). */
  | { pick: string, reset?: true, from?: string[], want: string | undefined }
  /** Several picks by one client, in order. */
  | { picks: string, want: string[] }
  /** setEndpoints with fresh Backend objects (as a table update builds them); `changed` is its result. */
  | { endpoints: string[], extra?: string[], changed: boolean }
  | { ttl: number }
  | { advance: number }
  | { unpin: string }
  /** Pins held (affinityEntries). */
  | { pins: number }
  /** affinityHits of the balancer's current Backend for an endpoint. */
  | { hits: string, want: number }
  /** `n` distinct clients pick once each (c0, c1, ...). */
  | { clients: number }
  /** Sets the live `active` count of endpoints (open connections / sessions), by name. */
  | { active: Record<string, number> }
  /** `n` picks by one client: endpoints never chosen (least-connections, p2c). */
  | { never: string, in: number }

interface Case {
  name: string
  algorithm?: Algorithm
  seed?: number
  /** ClientIP affinity TTL in ms; 0 or absent: none. */
  ttl?: number
  endpoints: string[]
  extra?: string[]
  steps: Step[]
}

const cases: Case[] = [
  {
    name: 'round-robin visits the endpoints in list order and wraps',
    endpoints: ['a', 'b', 'c'],
    steps: [{ picks: '1.1.1.1', want: ['a', 'b', 'c', 'a', 'b', 'c', 'a'] }]
  },
  {
    name: 'without affinity the client address does not matter: one cursor for all',
    endpoints: ['a', 'b', 'c'],
    steps: [
      { pick: '1.1.1.1', want: 'a' }, { pick: '2.2.2.2', want: 'b' },
      { pick: '1.1.1.1', want: 'c' }, { pick: '3.3.3.3', want: 'a' }, { pins: 0 }
    ]
  },
  {
    name: 'no endpoints: nothing to pick, with or without affinity',
    endpoints: [],
    ttl: 1000,
    steps: [{ pick: '1.1.1.1', want: undefined }, { pins: 0 }, { endpoints: ['a'], changed: true }, { pick: '1.1.1.1', want: 'a' }]
  },
  {
    name: 'a changed endpoint set restarts the cursor at the first endpoint',
    endpoints: ['a', 'b', 'c'],
    steps: [
      { picks: '1.1.1.1', want: ['a', 'b'] },
      { endpoints: ['a', 'b', 'c', 'd'], changed: true },
      { picks: '1.1.1.1', want: ['a', 'b', 'c', 'd', 'a'] }
    ]
  },
  {
    name: 'a removed endpoint is a changed set too: cursor back to the start',
    endpoints: ['a', 'b', 'c'],
    steps: [{ picks: '1.1.1.1', want: ['a', 'b'] }, { endpoints: ['a', 'c'], changed: true }, { picks: '1.1.1.1', want: ['a', 'c', 'a'] }]
  },
  {
    name: 'the same set in new objects is no change: the cursor goes on',
    endpoints: ['a', 'b', 'c'],
    steps: [
      { picks: '1.1.1.1', want: ['a', 'b'] },
      { endpoints: ['a', 'b', 'c'], changed: false },
      { picks: '1.1.1.1', want: ['c', 'a'] }
    ]
  },
  {
    name: 'same endpoints in another order is a changed set (the list is sorted upstream)',
    endpoints: ['a', 'b', 'c'],
    steps: [{ pick: '1.1.1.1', want: 'a' }, { endpoints: ['b', 'a', 'c'], changed: true }, { pick: '1.1.1.1', want: 'b' }]
  },
  {
    name: 'ClientIP affinity: each client is pinned to its first pick',
    endpoints: ['a', 'b', 'c'],
    ttl: 10_000,
    steps: [
      { pick: '1.1.1.1', want: 'a' }, { pick: '2.2.2.2', want: 'b' },
      { picks: '1.1.1.1', want: ['a', 'a', 'a'] }, { pick: '2.2.2.2', want: 'b' },
      { pick: '3.3.3.3', want: 'c' }, { pins: 3 }, { hits: 'a', want: 3 }, { hits: 'b', want: 1 }, { hits: 'c', want: 0 }
    ]
  },
  {
    name: 'a pin is refreshed on use: a client that keeps coming keeps its endpoint past one TTL',
    endpoints: ['a', 'b'],
    ttl: 1000,
    steps: [
      { pick: '1.1.1.1', want: 'a' },
      { advance: 900 }, { pick: '1.1.1.1', want: 'a' },
      { advance: 900 }, { pick: '1.1.1.1', want: 'a' },
      { advance: 900 }, { pick: '1.1.1.1', want: 'a' }
    ]
  },
  {
    name: 'a pin holds until just before the TTL',
    endpoints: ['a', 'b'],
    ttl: 1000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { advance: 999 }, { pick: '1.1.1.1', want: 'a' }, { hits: 'a', want: 1 }]
  },
  {
    name: 'a pin expires after the TTL: the next pick goes to the cursor',
    endpoints: ['a', 'b'],
    ttl: 1000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { advance: 1000 }, { pick: '1.1.1.1', want: 'b' }, { hits: 'a', want: 0 }, { pins: 1 }, { pick: '1.1.1.1', want: 'b' }]
  },
  {
    name: 'a shorter TTL re-bases pins at once (kubernetes#107398)',
    endpoints: ['a', 'b'],
    ttl: 10_000,
    steps: [
      { pick: '1.1.1.1', want: 'a' }, { advance: 1000 },
      { ttl: 2000 }, { pins: 1 }, { advance: 2000 }, { pick: '1.1.1.1', want: 'b' }
    ]
  },
  {
    name: 'a longer TTL applies from the next use',
    endpoints: ['a', 'b'],
    ttl: 1000,
    steps: [
      { pick: '1.1.1.1', want: 'a' }, { ttl: 5000 }, { advance: 500 }, { pick: '1.1.1.1', want: 'a' },
      { advance: 4000 }, { pick: '1.1.1.1', want: 'a' }
    ]
  },
  {
    name: 'TTL 0 turns affinity off and drops every pin',
    endpoints: ['a', 'b'],
    ttl: 1000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { ttl: 0 }, { pins: 0 }, { pick: '1.1.1.1', want: 'b' }, { pins: 0 }]
  },
  {
    name: 'a retry after a failed dial (reset) replaces the pin with the next endpoint',
    endpoints: ['a', 'b', 'c'],
    ttl: 10_000,
    steps: [
      { pick: '1.1.1.1', want: 'a' }, { pick: '1.1.1.1', reset: true, want: 'b' },
      { picks: '1.1.1.1', want: ['b', 'b'] }, { pins: 1 }, { hits: 'a', want: 0 }, { hits: 'b', want: 2 }
    ]
  },
  {
    name: 'reset without affinity just moves the cursor on',
    endpoints: ['a', 'b', 'c'],
    steps: [{ pick: '1.1.1.1', want: 'a' }, { pick: '1.1.1.1', reset: true, want: 'b' }, { pick: '1.1.1.1', want: 'c' }]
  },
  {
    name: 'unpin forgets the client: its next pick comes from the cursor',
    endpoints: ['a', 'b', 'c'],
    ttl: 10_000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { pick: '2.2.2.2', want: 'b' }, { unpin: '1.1.1.1' }, { pins: 1 }, { pick: '1.1.1.1', want: 'c' }, { pick: '2.2.2.2', want: 'b' }]
  },
  {
    name: 'candidates (traffic policy Local): picks stay among them',
    endpoints: ['a', 'b', 'c'],
    // The cursor is shared with unrestricted picks: it wraps within the shorter candidate list.
    steps: [
      { pick: '1.1.1.1', from: ['c'], want: 'c' }, { pick: '1.1.1.1', from: ['c'], want: 'c' },
      { pick: '1.1.1.1', from: ['b', 'c'], want: 'c' }, { pick: '1.1.1.1', from: ['b', 'c'], want: 'b' }, { pick: '1.1.1.1', want: 'b' }
    ]
  },
  {
    name: 'candidates: a pin outside them is replaced by one inside',
    endpoints: ['a', 'b', 'c'],
    ttl: 10_000,
    steps: [
      { pick: '1.1.1.1', want: 'a' },
      { pick: '1.1.1.1', from: ['b', 'c'], want: 'c' },
      { pick: '1.1.1.1', from: ['b', 'c'], want: 'c' },
      { pick: '1.1.1.1', want: 'c' }, { pins: 1 }
    ]
  },
  {
    name: 'candidates: a pin inside them is kept',
    endpoints: ['a', 'b', 'c'],
    ttl: 10_000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { pick: '1.1.1.1', from: ['a', 'c'], want: 'a' }, { hits: 'a', want: 1 }]
  },
  {
    name: 'a pin to an extra (serving-and-terminating local) endpoint lives while it stays extra',
    endpoints: ['a', 'b'],
    extra: ['h'],
    ttl: 10_000,
    steps: [
      { pick: '1.1.1.1', from: ['h'], want: 'h' },
      { endpoints: ['a', 'b', 'c'], extra: ['h'], changed: true }, { pins: 1 },
      { pick: '1.1.1.1', from: ['h'], want: 'h' }, { hits: 'h', want: 1 },
      { endpoints: ['a', 'b', 'c'], extra: [], changed: false }, { pins: 0 }
    ]
  },
  {
    name: 'pins to an endpoint that left are dropped; the others stay',
    endpoints: ['a', 'b', 'c'],
    ttl: 10_000,
    steps: [
      { pick: '1.1.1.1', want: 'a' }, { pick: '2.2.2.2', want: 'b' }, { pick: '3.3.3.3', want: 'c' },
      { endpoints: ['a', 'c'], changed: true }, { pins: 2 },
      { pick: '2.2.2.2', want: 'a' }, { pick: '1.1.1.1', want: 'a' }, { pick: '3.3.3.3', want: 'c' }
    ]
  },
  {
    name: 'surviving pins follow the new Backend objects of a changed set (counters land on the live one)',
    endpoints: ['a', 'b'],
    ttl: 10_000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { endpoints: ['a', 'b', 'c'], changed: true }, { pick: '1.1.1.1', want: 'a' }, { hits: 'a', want: 1 }]
  },
  {
    name: 'with many pins, expired ones are swept when a new client arrives',
    endpoints: ['a', 'b'],
    ttl: 1000,
    steps: [{ clients: 1100 }, { pins: 1100 }, { advance: 500 }, { pick: 'new-1', want: 'a' }, { pins: 1101 }, { advance: 1000 }, { pick: 'new-2', want: 'b' }, { pins: 1 }]
  },
  {
    name: 'random with a fixed seed: a known sequence',
    algorithm: 'random',
    seed: 42,
    endpoints: ['a', 'b', 'c', 'd'],
    steps: [{ picks: '1.1.1.1', want: ['c', 'b', 'd', 'c', 'a', 'c', 'b', 'c', 'd', 'b', 'a', 'd'] }]
  },
  {
    name: 'random with another seed: another known sequence',
    algorithm: 'random',
    seed: 7,
    endpoints: ['a', 'b', 'c', 'd'],
    steps: [{ picks: '1.1.1.1', want: ['a', 'a', 'd', 'c', 'c', 'b', 'b', 'a'] }]
  },
  {
    name: 'random with affinity: the pin holds, a reset draws again',
    algorithm: 'random',
    seed: 42,
    endpoints: ['a', 'b', 'c', 'd'],
    ttl: 10_000,
    steps: [{ pick: '1.1.1.1', want: 'c' }, { picks: '1.1.1.1', want: ['c', 'c'] }, { pick: '1.1.1.1', reset: true, want: 'b' }, { pick: '1.1.1.1', want: 'b' }]
  },
  {
    name: 'least-connections: all idle, ties go round-robin',
    algorithm: 'least-connections',
    endpoints: ['a', 'b', 'c'],
    steps: [{ picks: '1.1.1.1', want: ['a', 'b', 'c', 'a', 'b'] }]
  },
  {
    name: 'least-connections: the busy endpoint is passed over while others have fewer',
    algorithm: 'least-connections',
    endpoints: ['a', 'b', 'c'],
    steps: [
      { active: { a: 1 } }, { picks: '1.1.1.1', want: ['b', 'c', 'b', 'c'] },
      { active: { a: 1, b: 3, c: 2 } }, { picks: '1.1.1.1', want: ['a', 'a'] },
      // A tie again: the cursor goes on from just past the last pick (a).
      { active: { a: 2, b: 2, c: 2 } }, { picks: '1.1.1.1', want: ['b', 'c', 'a'] }
    ]
  },
  {
    name: 'least-connections: a changed set restarts the tie-break cursor; candidates are honoured',
    algorithm: 'least-connections',
    endpoints: ['a', 'b', 'c'],
    steps: [
      { picks: '1.1.1.1', want: ['a', 'b'] }, { endpoints: ['a', 'b', 'c', 'd'], changed: true },
      { active: { a: 4, b: 4, c: 4 } }, { pick: '1.1.1.1', want: 'd' },
      { pick: '1.1.1.1', from: ['a', 'b'], want: 'a' }, { pick: '1.1.1.1', from: ['a', 'b'], want: 'b' }
    ]
  },
  {
    name: 'least-connections with affinity: the pin holds even when its endpoint is the busiest',
    algorithm: 'least-connections',
    endpoints: ['a', 'b'],
    ttl: 10_000,
    steps: [{ pick: '1.1.1.1', want: 'a' }, { active: { a: 9 } }, { pick: '1.1.1.1', want: 'a' }, { pick: '2.2.2.2', want: 'b' }, { pick: '1.1.1.1', reset: true, want: 'b' }]
  },
  {
    name: 'p2c with a fixed seed: a known sequence (two draws per pick)',
    algorithm: 'p2c',
    seed: 42,
    endpoints: ['a', 'b', 'c', 'd'],
    // a has the fewest: it wins whenever drawn; d never wins.
    steps: [{ active: { a: 1, b: 2, c: 3, d: 4 } }, { picks: '1.1.1.1', want: ['b', 'c', 'a', 'b', 'b', 'a', 'a', 'a', 'b', 'a'] }, { never: 'd', in: 100 }]
  },
  {
    name: 'p2c: the more loaded of any two never wins, so the busiest endpoint gets nothing',
    algorithm: 'p2c',
    seed: 3,
    endpoints: ['a', 'b', 'c'],
    steps: [{ active: { a: 5, b: 1, c: 2 } }, { never: 'a', in: 200 }, { active: { a: 0, b: 9, c: 1 } }, { never: 'b', in: 200 }]
  },
  {
    name: 'p2c: one endpoint is always it; two: the idler one',
    algorithm: 'p2c',
    seed: 9,
    endpoints: ['a'],
    steps: [
      { picks: '1.1.1.1', want: ['a', 'a'] }, { endpoints: ['a', 'b'], changed: true },
      { active: { a: 3, b: 1 } }, { picks: '1.1.1.1', want: ['b', 'b', 'b', 'b'] }
    ]
  }
]

/** p2c as specified (two distinct uniform draws, the lower `active` wins, the first on a tie), outside the Balancer. */
function p2cExpected (seed: number, names: string[], active: Record<string, number>, n: number): string[] {
  const r = mulberry32(seed)
  const out: string[] = []
  for (let k = 0; k < n; k++) {
    const i = Math.floor(r() * names.length)
    let j = Math.floor(r() * (names.length - 1))
    if (j >= i) j++
    const x = names[i] as string
    const y = names[j] as string
    out.push((active[y] ?? 0) < (active[x] ?? 0) ? y : x)
  }
  return out
}

for (const c of cases) {
  t.test(c.name, async (t) => {
    const lb = new Balancer(c.algorithm ?? 'round-robin')
    let clock = 1_700_000_000_000
    lb.now = () => clock
    lb.random = mulberry32(c.seed ?? 1)
    lb.setAffinity(c.ttl ?? 0)
    // The objects the balancer holds now, by name: candidates must be these (pins compare by identity).
    let live = new Map<string, Backend>()
    const setEndpoints = (names: string[], extra: string[]): boolean => {
      const next = names.map(backend)
      const ex = extra.map(backend)
      live = new Map([...ex, ...next].map((b) => [nameOf(b) ?? '', b]))
      return lb.setEndpoints(next, ex)
    }
    setEndpoints(c.endpoints, c.extra ?? [])
    const current = (name: string): Backend => {
      const b = live.get(name)
      if (b === undefined) throw new Error(`row names endpoint ${name}, which is not in the set`)
      return b
    }

    c.steps.forEach((s, i) => {
      const at = `step ${i + 1}`
      if ('pick' in s) {
        const from = s.from?.map(current)
        t.equal(nameOf(lb.pick(s.pick, s.reset === true, from)), s.want, `${at}: ${s.pick}${s.reset === true ? ' (reset)' : ''}${from === undefined ? '' : ` from ${String(s.from)}`} gets ${String(s.want)}`)
      } else if ('picks' in s) {
        t.same(s.want.map(() => nameOf(lb.pick(s.picks, false))), s.want, `${at}: ${s.picks} gets ${s.want.join(' ')}`)
      } else if ('endpoints' in s) {
        t.equal(setEndpoints(s.endpoints, s.extra ?? []), s.changed, `${at}: endpoints [${String(s.endpoints)}] ${s.changed ? 'are' : 'are not'} a change`)
      } else if ('ttl' in s) {
        lb.setAffinity(s.ttl)
        t.equal(lb.usesClientIP, s.ttl > 0 || lb.algorithm === 'hash', `${at}: TTL ${s.ttl}`)
      } else if ('advance' in s) {
        clock += s.advance
      } else if ('unpin' in s) {
        lb.unpin(s.unpin)
      } else if ('pins' in s) {
        t.equal(lb.affinityEntries, s.pins, `${at}: ${s.pins} pins`)
      } else if ('hits' in s) {
        t.equal(current(s.hits).affinityHits, s.want, `${at}: ${s.hits} has ${s.want} affinity hits`)
      } else if ('active' in s) {
        for (const b of live.values()) b.active = s.active[nameOf(b) ?? ''] ?? 0
      } else if ('never' in s) {
        const got = new Set<string | undefined>()
        for (let k = 0; k < s.in; k++) got.add(nameOf(lb.pick('1.1.1.1', false)))
        t.notOk(got.has(s.never), `${at}: ${s.never} never chosen in ${s.in} picks (got ${[...got].join(' ')})`)
      } else {
        for (let k = 0; k < s.clients; k++) lb.pick(`c${k}`, false)
      }
    })
  })
}

t.test('the defaults are the real clock and Math.random', async (t) => {
  const lb = new Balancer('random')
  t.equal(lb.now, Date.now, 'now is Date.now')
  t.equal(lb.random, Math.random, 'random is Math.random')
})

t.test('p2c follows its definition for any seed, and the same seed gives the same picks', async (t) => {
  const names = ['a', 'b', 'c', 'd', 'e']
  const active: Record<string, number> = { a: 3, b: 0, c: 3, d: 1, e: 2 }
  for (const seed of [1, 2, 99, 12345]) {
    const run = (): string[] => {
      const lb = new Balancer('p2c')
      lb.random = mulberry32(seed)
      const eps = names.map(backend)
      for (const b of eps) b.active = active[nameOf(b) ?? ''] ?? 0
      lb.setEndpoints(eps)
      return Array.from({ length: 50 }, () => nameOf(lb.pick('1.1.1.1', false)) ?? '')
    }
    const first = run()
    t.same(first, p2cExpected(seed, names, active, 50), `seed ${seed}: as specified`)
    t.same(run(), first, `seed ${seed}: reproducible`)
  }
})

/** Endpoints 10.1.0.1:80 ... 10.1.0.n:80 (beyond the lettered ones). */
function many (n: number): Backend[] {
  return Array.from({ length: n }, (_, i) => new Backend(`10.1.${i >> 8}.${(i & 255) + 1}`, 80))
}
const CLIENTS = Array.from({ length: 10_000 }, (_, i) => `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`)

function hashMap (eps: Backend[], clients: string[] = CLIENTS): string[] {
  const lb = new Balancer('hash')
  lb.setEndpoints(eps)
  return clients.map((c) => lb.pick(c, false)?.key ?? '')
}

t.test('hash: a client keeps its endpoint; picks need the client address', async (t) => {
  const lb = new Balancer('hash')
  t.ok(lb.usesClientIP, 'hash uses the client address without affinity')
  lb.setEndpoints(many(5))
  const first = lb.pick('192.0.2.7', false)
  for (let i = 0; i < 20; i++) t.equal(lb.pick('192.0.2.7', false), first)
  t.equal(lb.affinityEntries, 0, 'no per-client state')
  const seen = new Set(CLIENTS.slice(0, 500).map((c) => lb.pick(c, false)?.key))
  t.equal(seen.size, 5, 'clients spread over every endpoint')
  t.equal(hashClient('::ffff:192.0.2.7'), hashClient('192.0.2.7'), 'an IPv4-mapped address hashes as its IPv4 form')
  t.not(hashClient('::ffff:0:1'), hashClient('0:1'), 'only the IPv4-mapped form is folded')
})

t.test('hash: two balancers with the same endpoints map every client identically, whatever the list order', async (t) => {
  const eps = many(10)
  const a = hashMap(eps)
  const b = hashMap(many(10).reverse())
  const c = hashMap([...many(10).slice(5), ...many(10).slice(0, 5)])
  t.equal(a.filter((k, i) => k !== b[i]).length, 0, 'reversed list: same map')
  t.equal(a.filter((k, i) => k !== c[i]).length, 0, 'rotated list: same map')
  const counts = new Map<string, number>()
  for (const k of a) counts.set(k, (counts.get(k) ?? 0) + 1)
  t.equal(counts.size, 10)
  for (const [k, n] of counts) t.ok(n > 700 && n < 1300, `${k}: ${n} of 10,000 clients (about 1,000)`)
})

t.test('hash: removing or adding one of 10 endpoints moves about a tenth of the clients', async (t) => {
  const ten = many(10)
  const before = hashMap(ten)
  const gone = (ten[3] as Backend).key
  const after = hashMap(ten.filter((b) => b.key !== gone))
  const moved = before.filter((k, i) => k !== after[i]).length
  const hadGone = before.filter((k) => k === gone).length
  t.ok(before.every((k, i) => k !== gone || after[i] !== gone), 'every client of the removed endpoint moved')
  t.ok(moved <= 1200, `removing one of 10 moved ${moved} of 10,000 (≤ 12%)`)
  t.ok(moved - hadGone <= 200, `clients of the other endpoints that moved: ${moved - hadGone} (≤ 2%)`)
  const eleven = hashMap(many(11))
  const movedAdd = before.filter((k, i) => k !== eleven[i]).length
  t.ok(movedAdd <= 1200, `adding an 11th moved ${movedAdd} of 10,000`)
  const added = (many(11)[10] as Backend).key
  const elsewhere = eleven.filter((k, i) => k !== before[i] && k !== added).length
  t.ok(elsewhere <= 200, `clients that moved but not to the new endpoint: ${elsewhere} (≤ 2%)`)
})

t.test('hash: a retry goes to the next untried endpoint in list order, deterministically', async (t) => {
  const lb = new Balancer('hash')
  const eps = many(4)
  lb.setEndpoints(eps)
  const own = lb.pick('198.51.100.1', false) as Backend
  const i = eps.indexOf(own)
  const at = (k: number): Backend => eps[(i + k) % 4] as Backend
  t.equal(lb.pick('198.51.100.1', true, undefined, [own]), at(1), 'after its own failed: the next one')
  t.equal(lb.pick('198.51.100.1', true, undefined, [own, at(1)]), at(2), 'after two failed: the one after')
  t.equal(lb.pick('198.51.100.1', true, undefined, [at(1)]), own, 'its own endpoint was not tried: still its own')
  t.equal(lb.pick('198.51.100.1', true), at(1), 'reset without a tried list: the next one')
  t.equal(lb.pick('198.51.100.1', true, undefined, eps), at(1), 'all tried: the next one')
  t.equal(lb.pick('198.51.100.1', false), own, 'a fresh pick is its own again')
})

t.test('hash: candidates (traffic policy Local) get their own table; extra endpoints too', async (t) => {
  const lb = new Balancer('hash')
  const eps = many(6)
  const local = eps.slice(0, 3)
  lb.setEndpoints(eps, local)
  const keys = new Set(local.map((b) => b.key))
  for (const c of CLIENTS.slice(0, 300)) {
    const b = lb.pick(c, false, local)
    if (b === undefined || !keys.has(b.key)) { t.fail(`${c}: ${String(b?.key)} is not a candidate`); return }
    t.equal(lb.pick(c, false, local.slice()), b, `${c}: a copy of the list picks the same`)
  }
  // Same as a balancer whose whole set is the candidates.
  t.same(CLIENTS.slice(0, 300).map((c) => lb.pick(c, false, local)?.key), hashMap(local, CLIENTS.slice(0, 300)))
  // Every endpoint on this node (extra = the whole set): the candidates map as the whole set does.
  const all = many(6)
  const ex = all.slice()
  lb.setEndpoints(all, ex)
  t.same(CLIENTS.slice(0, 300).map((c) => lb.pick(c, false, ex)?.key), CLIENTS.slice(0, 300).map((c) => lb.pick(c, false)?.key))
})

t.test('hash with affinity: a pin outlives a membership change that would move the client', async (t) => {
  const lb = new Balancer('hash')
  lb.setAffinity(60_000)
  const ten = many(10)
  lb.setEndpoints(ten)
  const pins = new Map(CLIENTS.slice(0, 2000).map((c) => [c, lb.pick(c, false)?.key]))
  lb.setEndpoints(many(11))
  const plain = hashMap(many(11), CLIENTS.slice(0, 2000))
  const wouldMove = CLIENTS.slice(0, 2000).filter((c, i) => plain[i] !== pins.get(c))
  t.ok(wouldMove.length > 0, `${wouldMove.length} clients map elsewhere with 11 endpoints`)
  t.ok(wouldMove.every((c) => lb.pick(c, false)?.key === pins.get(c)), 'each keeps its pinned endpoint')
})

t.test('the hash table: sizes, balance, and built once per set', async (t) => {
  t.equal(maglevSize(1), 65_537)
  t.equal(maglevSize(655), 65_537)
  t.ok(maglevSize(656) >= 65_600 && maglevSize(656) > 65_537, 'past 655 endpoints a larger step')
  t.equal(hashString('10.0.0.1:80'), hashString('10.0.0.1:80'))
  t.not(hashString('10.0.0.1:80'), hashString('10.0.0.1:81'))
  const keys = many(7).map((b) => b.key)
  const table = new MaglevTable(keys)
  const per = new Array<number>(7).fill(0)
  for (const e of table.entries) per[e] = (per[e] ?? 0) + 1
  for (const n of per) t.ok(Math.abs(n - 65_537 / 7) <= 65_537 / 7 * 0.02, `slots per endpoint ${n} within 2% of even`)
  t.same(Array.from(new MaglevTable([...keys].reverse()).entries, (e) => 6 - e), Array.from(table.entries), 'reversed keys: same owners')
  // Same keys in new objects keep the table (no rebuild on a no-op update): picks stay identical.
  const lb = new Balancer('hash')
  lb.setEndpoints(many(7))
  const before = CLIENTS.slice(0, 100).map((c) => lb.pick(c, false)?.key)
  t.equal(lb.setEndpoints(many(7)), false)
  t.same(CLIENTS.slice(0, 100).map((c) => lb.pick(c, false)?.key), before)
})

t.test('ALGORITHMS and isAlgorithm', async (t) => {
  t.same([...ALGORITHMS], ['round-robin', 'random', 'least-connections', 'p2c', 'hash'])
  for (const a of ALGORITHMS) t.ok(isAlgorithm(a), a)
  t.notOk(isAlgorithm('leastconn'))
  t.notOk(isAlgorithm(undefined))
  // A balancer switched to hash later builds its table on the first pick.
  const lb = new Balancer('round-robin')
  lb.setEndpoints(many(3))
  lb.algorithm = 'hash'
  t.equal(lb.pick('1.2.3.4', false), lb.pick('1.2.3.4', false))
})
