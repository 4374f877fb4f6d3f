// The balancer without sockets: each row is a script of steps against one Balancer with a fake
// clock and a seeded random source, and every step states what it must observe.
import t from 'tap'
import { mulberry32 } from './helpers.js'
import { Backend } from '../lib/balancer/backend.js'
import { type Algorithm, Balancer } from '../lib/balancer/balancer.js'

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
  }
]

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
        t.equal(lb.usesClientIP, s.ttl > 0, `${at}: TTL ${s.ttl}`)
      } else if ('advance' in s) {
        clock += s.advance
      } else if ('unpin' in s) {
        lb.unpin(s.unpin)
      } else if ('pins' in s) {
        t.equal(lb.affinityEntries, s.pins, `${at}: ${s.pins} pins`)
      } else if ('hits' in s) {
        t.equal(current(s.hits).affinityHits, s.want, `${at}: ${s.hits} has ${s.want} affinity hits`)
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
