import type { FaultScope, ScopedToxic, Toxic, ToxicInput, ToxicStream, ToxicType } from '../faults/toxic.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import { ApiFailure, INVALID_STREAM, INVALID_TOXIC_TYPE, TOXIC_EXISTS, TOXIC_NOT_FOUND, badRequest, objectBody, optNumber, optString } from './http.js'

/** What the API needs of `proxy.faults` (lib/api/faults.ts). */
export interface FaultOps {
  add: (scope: FaultScope, input: ToxicInput) => Toxic[]
  update: (scope: FaultScope, name: string, patch: Partial<ToxicInput>) => Toxic
  remove: (scope: FaultScope, name: string) => boolean
  list: (scope?: FaultScope) => ScopedToxic[]
  clear: (scope?: FaultScope) => void
}

/** Every type svcproxy knows (TCP and UDP); Toxiproxy's are the first seven. */
const TYPES = new Set<string>(['latency', 'bandwidth', 'slow_close', 'timeout', 'reset_peer', 'slicer', 'limit_data', 'down', 'loss', 'duplicate', 'reorder'] satisfies ToxicType[])

/** A toxic as Toxiproxy prints it. */
export interface ToxicJson {
  name: string
  type: string
  stream: ToxicStream
  toxicity: number
  attributes: Record<string, number | string>
}

export function toxicJson (t: Toxic): ToxicJson {
  return { name: t.name, type: t.type, stream: t.stream, toxicity: t.toxicity, attributes: { ...t.attributes } }
}

/** Toxiproxy's order: the upstream chain, then the downstream one, each in the order added. */
export function chainOrder<T extends { stream: ToxicStream }> (list: T[]): T[] {
  return [...list.filter((t) => t.stream === 'upstream'), ...list.filter((t) => t.stream === 'downstream')]
}

function attributesOf (o: Record<string, unknown>): Record<string, number | string> | undefined {
  const a = o.attributes
  if (a === undefined || a === null) return undefined
  if (typeof a !== 'object' || Array.isArray(a)) throw badRequest(`attributes: expected an object, got ${JSON.stringify(a)}`)
  const out: Record<string, number | string> = {}
  for (const [k, v] of Object.entries(a as Record<string, unknown>)) {
    if (typeof v !== 'number' && typeof v !== 'string') throw badRequest(`attributes.${k}: expected a number, got ${JSON.stringify(v)}`)
    out[k] = v
  }
  return out
}

function toxicityOf (o: Record<string, unknown>): number | undefined {
  const v = optNumber(o, 'toxicity')
  if (v !== undefined && (v < 0 || v > 1)) throw badRequest(`toxicity: expected a number from 0 to 1, got ${v}`)
  return v
}

/**
 * A toxic create body, checked in Toxiproxy's order (AddToxicJson): stream (default
 * downstream), name (default `type_stream`), type, then the name's uniqueness on the proxy.
 */
export function parseToxicCreate (body: unknown, taken: (name: string) => boolean): Toxic {
  const o = objectBody(body)
  const streamText = (optString(o, 'stream') ?? 'downstream').toLowerCase()
  if (streamText !== 'upstream' && streamText !== 'downstream') throw new ApiFailure(400, INVALID_STREAM)
  const stream: ToxicStream = streamText
  const type = optString(o, 'type') ?? ''
  const name = optString(o, 'name') || `${type}_${stream}`
  if (!TYPES.has(type)) throw new ApiFailure(400, INVALID_TOXIC_TYPE)
  if (taken(name)) throw new ApiFailure(409, TOXIC_EXISTS)
  const toxicity = toxicityOf(o) ?? 1
  return { name, type: type as ToxicType, stream, toxicity, attributes: attributesOf(o) ?? {} }
}

/** A toxic update body: attributes merged into the current ones, toxicity kept unless given (UpdateToxicJson). */
export function parseToxicUpdate (body: unknown, current: Toxic): { attributes: Record<string, number | string>, toxicity: number } {
  const o = objectBody(body)
  return { attributes: { ...current.attributes, ...(attributesOf(o) ?? {}) }, toxicity: toxicityOf(o) ?? current.toxicity }
}

export function findToxic<T extends { name: string }> (list: T[], name: string): T {
  const t = list.find((x) => x.name === name)
  if (t === undefined) throw new ApiFailure(404, TOXIC_NOT_FOUND)
  return t
}

/** The fault registry's refusal (FaultError, SVCPROXY_FAULT) as Toxiproxy's 400. */
export function faultCall<T> (fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof ApiFailure) throw err
    if ((err as { code?: unknown }).code === 'SVCPROXY_FAULT') throw badRequest((err as Error).message)
    throw err
  }
}

/** `proxy.faults` (lib/api/faults.ts). */
export function faultsOf (proxy: ServiceProxy): FaultOps {
  return proxy.faults
}
