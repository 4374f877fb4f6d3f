import { isIP } from 'node:net'
import { FaultError } from '../errors.js'
import { endpointKey } from '../table/endpoints.js'
import type { FaultScope, Toxic, ToxicInput, ToxicStream, ToxicType } from './toxic.js'

/**
 * Validation of toxics and scopes: every error is a FaultError whose message names the field
 * (`toxic.attributes.latency: expected a number ≥ 0, got -5`). Attributes are Toxiproxy's,
 * with its units; a missing attribute takes its default (Toxiproxy's zero, unless noted).
 */

type AttrKind = 'ms' | 'us' | 'bytes' | 'rate' | 'probability' | 'mode'

interface AttrSpec {
  kind: AttrKind
  /** Default when missing; undefined = required. */
  dflt?: number | string
  /** Smallest value allowed (numbers). */
  min?: number
}

/** setTimeout's ceiling: a longer delay would fire at once. */
const MAX_MS = 2_147_483_647

/** Every type with its attributes. */
export const TOXIC_ATTRIBUTES: Readonly<Record<ToxicType, Readonly<Record<string, AttrSpec>>>> = {
  latency: { latency: { kind: 'ms', dflt: 0 }, jitter: { kind: 'ms', dflt: 0 } },
  bandwidth: { rate: { kind: 'rate', dflt: 0 } },
  slow_close: { delay: { kind: 'ms', dflt: 0 } },
  timeout: { timeout: { kind: 'ms', dflt: 0 } },
  reset_peer: { timeout: { kind: 'ms', dflt: 0 } },
  slicer: { average_size: { kind: 'bytes', min: 1 }, size_variation: { kind: 'bytes', dflt: 0 }, delay: { kind: 'us', dflt: 0 } },
  limit_data: { bytes: { kind: 'bytes' } },
  down: { mode: { kind: 'mode', dflt: 'refuse' } },
  loss: { probability: { kind: 'probability' } },
  duplicate: { probability: { kind: 'probability' } },
  reorder: { probability: { kind: 'probability' }, delay: { kind: 'ms', dflt: 10 } },
}

export const TOXIC_TYPES = Object.keys(TOXIC_ATTRIBUTES) as ToxicType[]

/** Types the TCP path applies, and the UDP path (latency and down apply to both). */
export const TCP_TOXICS: ReadonlySet<ToxicType> = new Set(['latency', 'bandwidth', 'slow_close', 'timeout', 'reset_peer', 'slicer', 'limit_data', 'down'])
export const UDP_TOXICS: ReadonlySet<ToxicType> = new Set(['loss', 'latency', 'duplicate', 'reorder', 'down'])

/** Types with no direction: one toxic whatever `stream` says. */
const UNDIRECTED: ReadonlySet<ToxicType> = new Set(['down'])

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/

function fail (path: string, expected: string, got: unknown): never {
  throw new FaultError(`${path}: expected ${expected}, got ${show(got)}`)
}

function show (v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v)
  if (v === undefined) return 'nothing'
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v)
  return Array.isArray(v) ? 'an array' : typeof v
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function attribute (name: string, spec: AttrSpec, v: unknown): number | string {
  const path = `toxic.attributes.${name}`
  if (spec.kind === 'mode') {
    if (v === 'refuse' || v === 'blackhole') return v
    return fail(path, '"refuse" or "blackhole"', v)
  }
  if (spec.kind === 'probability') {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(path, 'a number from 0 to 1', v)
    return v
  }
  const min = spec.min ?? 0
  const integer = spec.kind === 'bytes'
  const max = spec.kind === 'ms' || spec.kind === 'us' ? MAX_MS : Number.MAX_SAFE_INTEGER
  const what = `${integer ? 'an integer' : 'a number'} ≥ ${min} (${unitOf(spec.kind)}${max === MAX_MS ? `, ≤ ${MAX_MS}` : ''})`
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) fail(path, what, v)
  return v
}

function unitOf (k: AttrKind): string {
  return k === 'ms' ? 'milliseconds' : k === 'us' ? 'microseconds' : k === 'rate' ? 'KB/s' : 'bytes'
}

function attributes (type: ToxicType, raw: unknown, base: Record<string, number | string>): Record<string, number | string> {
  const specs = TOXIC_ATTRIBUTES[type]
  if (raw !== undefined && !isObject(raw)) fail('toxic.attributes', 'an object', raw)
  const given = raw ?? {}
  for (const k of Object.keys(given)) {
    if (specs[k] === undefined) throw new FaultError(`toxic.attributes.${k}: unknown attribute of a ${type} toxic (it takes ${Object.keys(specs).join(', ')})`)
  }
  const out: Record<string, number | string> = {}
  for (const [k, spec] of Object.entries(specs)) {
    const v = given[k] ?? base[k] ?? spec.dflt
    if (v === undefined) fail(`toxic.attributes.${k}`, `a value (${spec.kind === 'probability' ? 'a number from 0 to 1' : unitOf(spec.kind)}): ${k} is required for ${type}`, v)
    out[k] = attribute(k, spec, v)
  }
  if (type === 'slicer' && (out.size_variation as number) >= (out.average_size as number)) {
    fail('toxic.attributes.size_variation', `less than average_size (${String(out.average_size)})`, out.size_variation)
  }
  return out
}

function toxicity (v: unknown): number {
  if (v === undefined) return 1
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail('toxic.toxicity', 'a number from 0 to 1', v)
  return v
}

/**
 * A new toxic from a caller's input: one, or two with stream 'both' (`name`-upstream and
 * `name`-downstream; unnamed: `type`_upstream and `type`_downstream, as Toxiproxy names them).
 */
export function validateToxic (input: unknown): Toxic[] {
  if (!isObject(input)) fail('toxic', 'an object { type, name?, stream?, toxicity?, attributes? }', input)
  for (const k of Object.keys(input)) {
    if (k !== 'name' && k !== 'type' && k !== 'stream' && k !== 'toxicity' && k !== 'attributes') throw new FaultError(`toxic.${k}: unknown field (a toxic has type, name, stream, toxicity, attributes)`)
  }
  const type = input.type
  if (typeof type !== 'string' || !(TOXIC_TYPES as string[]).includes(type)) fail('toxic.type', `one of ${TOXIC_TYPES.join(', ')}`, type)
  const t = type as ToxicType
  const name = input.name
  if (name !== undefined && (typeof name !== 'string' || !NAME.test(name))) fail('toxic.name', '1 to 128 of A-Z a-z 0-9 _ . : -', name)
  const stream = input.stream ?? 'downstream'
  if (stream !== 'upstream' && stream !== 'downstream' && stream !== 'both') fail('toxic.stream', '"upstream", "downstream" or "both"', stream)
  const tox = toxicity(input.toxicity)
  const attrs = attributes(t, input.attributes, {})
  const streams: ToxicStream[] = stream === 'both' && !UNDIRECTED.has(t) ? ['upstream', 'downstream'] : [stream === 'both' ? 'downstream' : stream]
  return streams.map((s) => ({
    name: name === undefined ? `${t}_${s}` : streams.length === 2 ? `${name}-${s}` : name,
    type: t,
    stream: s,
    toxicity: tox,
    attributes: { ...attrs },
  }))
}

/** A toxic after `patch` (toxicity and attributes change; name, type and stream cannot). */
export function validatePatch (cur: Toxic, patch: unknown): { toxicity: number, attributes: Record<string, number | string> } {
  if (!isObject(patch)) fail('toxic', 'an object { toxicity?, attributes? }', patch)
  const p: Partial<ToxicInput> = patch
  if (p.type !== undefined && p.type !== cur.type) throw new FaultError(`toxic.type: cannot change (${cur.type} → ${String(p.type)}); remove the toxic and add another`)
  if (p.name !== undefined && p.name !== cur.name) throw new FaultError(`toxic.name: cannot change (${cur.name} → ${String(p.name)})`)
  if (p.stream !== undefined && p.stream !== cur.stream) throw new FaultError(`toxic.stream: cannot change (${cur.stream} → ${String(p.stream)}); remove the toxic and add another`)
  for (const k of Object.keys(patch)) {
    if (k !== 'name' && k !== 'type' && k !== 'stream' && k !== 'toxicity' && k !== 'attributes') throw new FaultError(`toxic.${k}: unknown field (a toxic has type, name, stream, toxicity, attributes)`)
  }
  return {
    toxicity: p.toxicity === undefined ? cur.toxicity : toxicity(p.toxicity),
    attributes: attributes(cur.type, patch.attributes, cur.attributes),
  }
}

/** A scope in its one spelling: `namespace/name` (a bare name is in `default`), port as a string, endpoint as `ip:port` (`[v6]:port`). */
export function validateScope (scope: unknown, partial = false): FaultScope {
  if (!isObject(scope)) fail('scope', 'an object { service, port?, endpoint? }', scope)
  for (const k of Object.keys(scope)) {
    if (k !== 'service' && k !== 'port' && k !== 'endpoint') throw new FaultError(`scope.${k}: unknown field (a scope has service, port, endpoint)`)
  }
  const out: FaultScope = { service: '' }
  const svc = scope.service
  if (svc === undefined && partial) {
    if (scope.port !== undefined || scope.endpoint !== undefined) throw new FaultError('scope.service: required with port or endpoint')
    return out
  }
  if (typeof svc !== 'string' || !/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(svc)) fail('scope.service', '"namespace/name" (or a name in default)', svc)
  out.service = svc.includes('/') ? svc : `default/${svc}`
  const port = scope.port
  if (port !== undefined) {
    if (typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535) out.port = String(port)
    else if (typeof port === 'string' && /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(port)) out.port = port
    else fail('scope.port', 'a port name or number (1-65535)', port)
  }
  const ep = scope.endpoint
  if (ep !== undefined) {
    const m = typeof ep === 'string' ? /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(ep) : null
    const ip = m === null ? '' : (m[1] ?? m[2] ?? '')
    const n = m === null ? 0 : Number(m[3])
    if (m === null || isIP(ip) === 0 || n < 1 || n > 65535) fail('scope.endpoint', '"ip:port" (IPv6 as "[ip]:port")', ep)
    out.endpoint = endpointKey(ip, n)
  }
  return out
}
