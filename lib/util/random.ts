/**
 * A seeded source of uniform [0, 1) numbers for createProxy({ seed }): the same seed gives the
 * same sequence on every run and every machine (sfc32, seeded through splitmix32). Every random
 * choice of the data plane (random and p2c picks, toxicity rolls, jitter) draws from one of these.
 */

/** A uniform [0, 1) source that can also be copied, to foresee its next draws without taking them (explain()). */
export interface SeededRandom {
  (): number
  /** The number the next call will return; the sequence does not move. */
  peek (): number
  /** An independent copy at the same point of the sequence. */
  fork (): () => number
  readonly seed: number
}

/** Any safe integer is a seed; it is folded to 32 bits. */
export function seededRandom (seed: number): SeededRandom {
  let s = (Math.trunc(seed) ^ Math.trunc(seed / 4294967296)) >>> 0
  const split = (): number => {
    s = (s + 0x9E3779B9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85EBCA6B) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xC2B2AE35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
  const g = sfc32([split(), split(), split(), split()])
  // A few rounds first: sfc32's first outputs are still close to the seed words.
  for (let i = 0; i < 12; i++) g()
  return Object.assign(g, { seed })
}

function sfc32 (st: [number, number, number, number]): (() => number) & { peek: () => number, fork: () => () => number } {
  let [a, b, c, d] = st
  const step = (commit: boolean): number => {
    const d1 = (d + 1) >>> 0
    const t = (((a + b) >>> 0) + d1) >>> 0
    if (commit) {
      d = d1
      a = b ^ (b >>> 9)
      b = (c + (c << 3)) >>> 0
      c = ((c << 21) | (c >>> 11)) >>> 0
      c = (c + t) >>> 0
    }
    return t / 4294967296
  }
  return Object.assign((): number => step(true), { peek: (): number => step(false), fork: () => sfc32([a, b, c, d]) })
}

/** A copy of `random` to draw from without moving it, when it can be copied (a seeded source); null otherwise. */
export function forkRandom (random: () => number): (() => number) | null {
  const f = (random as Partial<SeededRandom>).fork
  return typeof f === 'function' ? f() : null
}
