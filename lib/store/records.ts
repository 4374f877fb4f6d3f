// Stored records are raw Kubernetes JSON (what kubectl prints), not svcproxy's normalized form:
// `get -o json` stays kubectl-like, and every reader re-validates each record with the same
// parser as the file source, so a hand-corrupted record is caught and skipped by key.

import { ValidationError } from '../errors.js'
import { parseObjects } from '../model/document.js'
import { type KubeObject, type Service, objectKey } from '../model/types.js'

export interface StoredRecord {
  key: string
  obj: KubeObject
  /** The raw object, with kind/apiVersion made explicit (items of typed Lists omit them). */
  raw: Record<string, unknown>
}

export type RawObject = Record<string, unknown>

function isObj (v: unknown): v is RawObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Splits an already-validated document into one raw object per Kubernetes object, the way
 * parseDocument flattens it (arrays, Lists, typed Lists whose items inherit kind/apiVersion).
 */
export function flattenRaw (root: unknown): RawObject[] {
  const out: RawObject[] = []
  const visit = (v: unknown, depth: number, kind?: string, apiVersion?: string): void => {
    if (Array.isArray(v)) { for (const x of v) visit(x, depth + 1, kind, apiVersion); return }
    if (!isObj(v)) return
    const own = typeof v.kind === 'string' ? v.kind : undefined
    if (own !== undefined && own.endsWith('List') && depth < 16) {
      const listApi = typeof v.apiVersion === 'string' ? v.apiVersion : undefined
      const inherit = own === 'List' ? undefined : own.slice(0, -'List'.length)
      if (Array.isArray(v.items)) for (const x of v.items) visit(x, depth + 1, inherit, inherit === undefined ? undefined : listApi)
      return
    }
    out.push({ ...v, ...(v.kind == null && kind !== undefined ? { kind } : {}), ...(v.apiVersion == null && apiVersion !== undefined ? { apiVersion } : {}) })
  }
  visit(root, 0)
  return out
}

/**
 * Validates a whole document (all issues at once, as the file source reports them), then pairs
 * each object with its raw JSON. Objects of other kinds come back as warnings, not records.
 */
export function recordsOf (root: unknown, file: string): { records: StoredRecord[], warnings: string[] } {
  const doc = parseObjects(Array.isArray(root) ? root : [root], file)
  const records: StoredRecord[] = []
  for (const raw of flattenRaw(root)) {
    const one = parseObjects([raw], file).objects[0]
    if (one === undefined) continue // a kind svcproxy skips: already in doc.warnings
    records.push({ key: objectKey(one), obj: one, raw })
  }
  if (records.length !== doc.objects.length) {
    // Cannot happen unless the two flattenings disagree; refuse rather than store a wrong pairing.
    throw new ValidationError([{ file, object: '', path: '', message: `internal: paired ${records.length} of ${doc.objects.length} objects` }])
  }
  return { records, warnings: doc.warnings }
}

/** Re-validates one stored record; throws ValidationError when it is not a valid object named by its key. */
export function decodeRecord (key: string, text: string): KubeObject {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ValidationError([{ file: `redis:${key}`, object: '', path: '', message: `invalid JSON: ${(err as Error).message}` }])
  }
  const obj = parseObjects([raw], `redis:${key}`).objects[0]
  if (obj === undefined || !isKeyOf(key, obj)) {
    throw new ValidationError([{ file: `redis:${key}`, object: '', path: '', message: `expected the object ${key}, found ${obj === undefined ? 'an object of another kind' : objectKey(obj)}` }])
  }
  return obj
}

/** `key === objectKey(o)` without building the key: every record of a list is checked. */
function isKeyOf (key: string, o: KubeObject): boolean {
  const { kind, namespace: ns, name } = o
  const at = kind.length + ns.length + 2
  return key.length === at + name.length && key.startsWith(kind) && key.charCodeAt(kind.length) === 47 &&
    key.startsWith(ns, kind.length + 1) && key.charCodeAt(at - 1) === 47 && key.endsWith(name)
}

/**
 * Writes the API server's allocations (clusterIP, nodePorts) back into the raw object, so
 * every node reads the same addresses instead of allocating its own.
 */
export function withAllocations (raw: RawObject, svc: Service): RawObject {
  const spec = isObj(raw.spec) ? { ...raw.spec } : {}
  if (svc.type !== 'ExternalName' && svc.clusterIP !== '') {
    spec.clusterIP = svc.clusterIP
    spec.clusterIPs = [svc.clusterIP]
  }
  // Ports parsed one-to-one (a document with a bad port never gets here), so index i matches.
  if (Array.isArray(spec.ports)) {
    spec.ports = spec.ports.map((p: unknown, i) => {
      const np = svc.ports[i]?.nodePort ?? 0
      return isObj(p) && np !== 0 ? { ...p, nodePort: np } : p
    })
  }
  return { ...raw, spec }
}
