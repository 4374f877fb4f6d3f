// The writer's indexes (schema 2), so that an apply reads and writes what it changes, not the
// whole store: a digest per record (is this object changed?) and who holds each clusterIP and
// node port (is this allocation free?). Readers never use them.

import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import { type KubeObject, type Service, objectKey } from '../model/types.js'
import { Allocator } from '../table/allocator.js'
import { Table } from '../table/table.js'
import type { RedisClient } from './connect.js'
import { type StoredRecord, decodeRecord } from './records.js'

/** Keys per HMGET: a few hundred microseconds of Redis time each. */
export const READ_SLICE = 1000

export function digestOf (text: string): string {
  return createHash('sha1').update(text).digest('hex')
}

/** The alloc index fields a stored service holds (as Allocator.reserve counts them). */
export function claimsOf (s: Service): string[] {
  const out: string[] = []
  if (isIP(s.clusterIP) !== 0) out.push(`ip/${s.clusterIP}`)
  for (const p of s.ports) if (p.nodePort !== 0) out.push(`port/${p.nodePort}`)
  if (s.healthCheckNodePort !== 0) out.push(`port/${s.healthCheckNodePort}`)
  return [...new Set(out)]
}

function str (v: unknown): string | null {
  return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString('utf8') : null
}

/** HMGET in slices (one command per READ_SLICE fields); null for an absent field. */
export async function hmgetSlices (client: RedisClient, key: string, fields: string[]): Promise<Array<string | null>> {
  const out: Array<string | null> = []
  for (let i = 0; i < fields.length; i += READ_SLICE) {
    const reply = await client.call('HMGET', [key, ...fields.slice(i, i + READ_SLICE)])
    for (const v of Array.isArray(reply) ? reply as unknown[] : []) out.push(str(v))
  }
  return out
}

/**
 * An Allocator whose stored reservations are the alloc index in Redis, read on demand: a lookup
 * not known yet is recorded as a miss and answered "free". The writer then reads the misses
 * (and the addresses and ports that follow them, where a linear probe goes next) and plans again,
 * until a plan makes no lookup it has not checked.
 */
export class IndexAllocator extends Allocator {
  /** alloc index field → holder (`namespace/name`), or null: free. */
  readonly known = new Map<string, string | null>()
  readonly misses = new Set<string>()

  override ipHolder (ip: string): string | undefined {
    return super.ipHolder(ip) ?? this.remote(`ip/${ip}`)
  }

  override portHolder (port: number): string | undefined {
    return super.portHolder(port) ?? this.remote(`port/${port}`)
  }

  private remote (field: string): string | undefined {
    const v = this.known.get(field)
    if (v === undefined) { this.misses.add(field); return undefined }
    return v ?? undefined
  }

  /** The misses and, after each, the next `ahead` addresses or ports of the range. */
  wanted (ahead = 32): string[] {
    const out = new Set<string>()
    const { base, size } = this.clusterIPRange
    for (const f of this.misses) {
      out.add(f)
      if (f.startsWith('port/')) {
        const n = Number(f.slice(5))
        for (let i = 1; i <= ahead && n + i <= this.nodePortRange.max; i++) out.add(`port/${n + i}`)
      } else if (isIP(f.slice(3)) === 4) {
        const n = ipv4Int(f.slice(3))
        for (let i = 1; i <= ahead && n + i < base + size; i++) out.add(`ip/${intIpv4(n + i)}`)
      }
    }
    this.misses.clear()
    return [...out].filter((f) => !this.known.has(f))
  }

  async fetch (client: RedisClient, key: string, fields: string[]): Promise<void> {
    const values = await hmgetSlices(client, key, fields)
    fields.forEach((f, i) => this.known.set(f, values[i] ?? null))
  }
}

export interface PlanContext {
  client: RedisClient
  /** The alloc index key. */
  allocKey: string
  /** Stored services already validated, by key, with the text they were parsed from (the writer's cache). */
  parsed: Map<string, { text: string, obj: KubeObject }>
  clusterIPRange: string
  nodePortRange: string
}

/**
 * A table holding the stored versions of the changed services, checked and allocated against
 * the alloc index (read on demand), with the changed objects written into it.
 */
export async function planTable (ctx: PlanContext, changed: StoredRecord[], prevTexts: Array<string | null>, warnings: string[], file: string): Promise<{ table: Table, prevSvcs: Map<string, Service> }> {
  const prevSvcs = new Map<string, Service>()
  changed.forEach((r, i) => {
    const text = prevTexts[i] ?? null
    if (r.obj.kind !== 'Service' || text === null) return
    try {
      const hit = ctx.parsed.get(r.key)
      const obj = hit !== undefined && hit.text === text ? hit.obj : decodeRecord(r.key, text)
      ctx.parsed.set(r.key, { text, obj })
      if (ctx.parsed.size > 10_000) ctx.parsed.delete(ctx.parsed.keys().next().value ?? '')
      if (obj.kind === 'Service') prevSvcs.set(r.key, obj)
    } catch (err) {
      warnings.push(`skipping unreadable stored record ${r.key}: ${(err as Error).message.split('\n').slice(1).join('; ') || (err as Error).message}`)
    }
  })
  const { clusterIPRange, nodePortRange } = ctx
  const known = new Map<string, string | null>()
  const first = new Set<string>()
  for (const s of prevSvcs.values()) for (const c of claimsOf(s)) first.add(c)
  for (const r of changed) if (r.obj.kind === 'Service') for (const c of claimsOf(r.obj)) first.add(c)
  let want = [...first]
  for (let round = 0; ; round++) {
    if (want.length > 0) {
      const values = await hmgetSlices(ctx.client, ctx.allocKey, want)
      want.forEach((f, i) => known.set(f, values[i] ?? null))
    }
    const alloc = new IndexAllocator(clusterIPRange, nodePortRange)
    for (const [f, v] of known) alloc.known.set(f, v)
    const table = new Table({ allocator: alloc })
    for (const s of prevSvcs.values()) {
      try { table.write([s], [], 'redis') } catch { warnings.push(`skipping conflicting stored record ${objectKey(s)}`) }
    }
    table.write(changed.map((r) => r.obj), [], file) // throws ValidationError: nothing is written
    want = alloc.wanted()
    if (want.length === 0 || round >= 1000) return { table, prevSvcs }
  }
}

function ipv4Int (ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0)
}

function intIpv4 (n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.')
}
