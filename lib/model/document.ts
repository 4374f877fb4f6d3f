// Whole documents: JSON text or decoded values → validated objects. A document
// is accepted or refused as a unit, so callers never see half of a manifest.

import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { FileError, ValidationError } from '../errors.js'
import { parseEndpoints } from './endpoints.js'
import { parseEndpointSlice } from './endpointslice.js'
import { findJsonSyntaxError, yamlHint } from './json.js'
import { identify } from './metadata.js'
import { parsePod } from './pod.js'
import { Ctx, IssueSink, MAX_STRING_BYTES, type Raw, at, child, describe, field, isRecord, joinPath } from './reader.js'
import { checkSelfLoops, type Placed } from './self-loop.js'
import { parseService } from './service.js'
import { type KubeObject, objectKey, objectRef } from './types.js'

export interface ParsedDocument {
  objects: KubeObject[]
  /** One line per object that was skipped (kinds svcproxy does not read). */
  warnings: string[]
}

export const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
/** Lists inside Lists are flattened, but only this deep, so a self-referencing value cannot loop. */
const MAX_LIST_DEPTH = 16
const READ_CHUNK = 1024 * 1024

interface KindSpec {
  apiVersions: readonly string[]
  parse: (ctx: Ctx, raw: Raw) => KubeObject | undefined
}

const KINDS = new Map<string, KindSpec>([
  ['Service', { apiVersions: ['v1'], parse: parseService }],
  ['Endpoints', { apiVersions: ['v1'], parse: parseEndpoints }],
  ['EndpointSlice', { apiVersions: ['discovery.k8s.io/v1', 'discovery.k8s.io/v1beta1'], parse: parseEndpointSlice }],
  ['Pod', { apiVersions: ['v1'], parse: parsePod }]
])

const SKIP_NOTE = '(svcproxy reads Service, Endpoints, EndpointSlice, Pod)'

/** Parses JSON text: one object, an array of objects, or a List (nested Lists are flattened). */
export function parseDocument (text: string, file: string): ParsedDocument {
  return guard(file, () => {
    if (typeof text !== 'string') fail(file, `expected the document as a string, got ${describe(text)}`)
    // Bytes are at least UTF-16 units, so exact counting is only needed near the limit.
    if (text.length > MAX_DOCUMENT_BYTES || text.length * 3 > MAX_DOCUMENT_BYTES) {
      const bytes = Buffer.byteLength(text, 'utf8')
      if (bytes > MAX_DOCUMENT_BYTES) fail(file, `document is ${bytes} bytes; the limit is 64 MiB`)
    }
    const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text
    let root: unknown
    try {
      root = JSON.parse(body)
    } catch (err) {
      const p = findJsonSyntaxError(body)
      if (p === null) fail(file, `invalid JSON: ${errorText(err)}${yamlHint(body, file)}`)
      fail(file, `invalid JSON at line ${p.line}, column ${p.column} (character ${p.offset}): ${p.reason}${yamlHint(body, file)}`)
    }
    return build(root, file)
  })
}

/** The same validation for values that are already decoded (the library's apply()). */
export function parseObjects (raw: unknown[], file: string): ParsedDocument {
  return guard(file, () => build(raw, file))
}

/** Reads and parses a JSON file; FileError when it cannot be read or is too large. */
export async function readDocumentFile (path: string): Promise<ParsedDocument> {
  return parseDocumentBytes(await readDocumentBytes(path), path)
}

/** A document file's bytes, bounded by MAX_DOCUMENT_BYTES; FileError when it cannot be read. */
export async function readDocumentBytes (path: string): Promise<Buffer> {
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (err) {
    throw new FileError(String(path), fsReason(err), { cause: err })
  }
  let bytes: Buffer
  try {
    const st = await fh.stat()
    if (st.isDirectory()) throw new FileError(path, 'is a directory, expected a JSON file')
    if (st.size > MAX_DOCUMENT_BYTES) throw new FileError(path, `document is ${st.size} bytes; the limit is 64 MiB`)
    // stat says 0 for pipes and /proc files, so the read is bounded on its own too.
    const chunks: Buffer[] = []
    let total = 0
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_CHUNK)
      const { bytesRead } = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      chunks.push(buf.subarray(0, bytesRead))
      total += bytesRead
      if (total > MAX_DOCUMENT_BYTES) throw new FileError(path, `document is more than ${MAX_DOCUMENT_BYTES} bytes; the limit is 64 MiB`)
    }
    bytes = Buffer.concat(chunks, total)
  } catch (err) {
    if (err instanceof FileError) throw err
    throw new FileError(path, fsReason(err), { cause: err })
  } finally {
    await fh.close().catch(() => {})
  }
  return bytes
}

/** Decodes (UTF-8, strictly) and parses a document file's bytes. */
export function parseDocumentBytes (bytes: Buffer, path: string): ParsedDocument {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    fail(path, 'expected UTF-8 text, found bytes that are not valid UTF-8')
  }
  return parseDocument(text, path)
}

function fail (file: string, message: string): never {
  throw new ValidationError([{ file, object: '', path: '', message }])
}

/** Whatever the input does (throwing getters, proxies, absurd nesting), callers only ever see ValidationError. */
function guard (file: string, fn: () => ParsedDocument): ParsedDocument {
  const name = typeof file === 'string' ? file : '<input>'
  try {
    return fn()
  } catch (err) {
    if (err instanceof ValidationError) throw err
    throw new ValidationError([{ file: name, object: '', path: '', message: `could not read the document: ${errorText(err)}` }])
  }
}

function errorText (err: unknown): string {
  try {
    return err instanceof Error ? err.message : String(err)
  } catch {
    return 'unknown error'
  }
}

function fsReason (err: unknown): string {
  const code = isRecord(err) ? field(err, 'code') : undefined
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory, expected a JSON file'
  return errorText(err)
}

interface Item {
  raw: unknown
  /** Where the object sits in the document (`items[3]`), for issues about objects without a usable name. */
  loc: string
  /** A typed List (`ServiceList`) may omit kind and apiVersion on its items. */
  kind?: string
  apiVersion?: string
}

function isList (v: unknown): v is Raw {
  if (!isRecord(v)) return false
  const kind = field(v, 'kind')
  return typeof kind === 'string' && kind.endsWith('List')
}

function flatten (root: unknown, sink: IssueSink): Item[] {
  const out: Item[] = []
  const visit = (v: unknown, loc: string, depth: number, inherited: Pick<Item, 'kind' | 'apiVersion'>): void => {
    if (!isList(v)) {
      out.push({ raw: v, loc, kind: inherited.kind, apiVersion: inherited.apiVersion }) // one shape, no spread
      return
    }
    if (depth > MAX_LIST_DEPTH) {
      sink.add('', loc, `expected Lists nested at most ${MAX_LIST_DEPTH} deep, got deeper nesting`)
      return
    }
    const items = field(v, 'items')
    if (items === undefined) return
    if (!Array.isArray(items)) {
      sink.add('', joinPath(loc, 'items'), `expected an array of objects, got ${describe(items)}`)
      return
    }
    const listKind = String(field(v, 'kind'))
    const apiVersion = field(v, 'apiVersion')
    const next: Pick<Item, 'kind' | 'apiVersion'> = listKind === 'List'
      ? {}
      : { kind: listKind.slice(0, -'List'.length), ...(typeof apiVersion === 'string' ? { apiVersion } : {}) }
    for (let i = 0; i < items.length; i++) visit(items[i], joinPath(loc, at('items', i)), depth + 1, next)
  }
  if (Array.isArray(root)) {
    for (let i = 0; i < root.length; i++) visit(root[i], at('', i), 1, {})
  } else if (isRecord(root)) {
    visit(root, '', 0, {})
  } else {
    sink.add('', '', `expected a Kubernetes object, an array of objects or a List, got ${describe(root)}`)
  }
  return out
}

function clip (s: string): string {
  return s.length > 100 ? `${s.slice(0, 100)}...` : s
}

function build (root: unknown, file: string): ParsedDocument {
  const sink = new IssueSink(file)
  const objects: KubeObject[] = []
  const warnings: string[] = []
  const placed: Placed[] = []
  // The Redis source decodes each record as a document of its own: one object, nothing to compare
  // it with (no Map), and the walk's scratch arrays are the last document's (unless in use: reentry).
  const items = flatten(root, sink)
  const seen = items.length > 1 ? new Map<string, string>() : null
  const strings = spareScan ?? new StringScan()
  spareScan = null

  for (let i = 0; i < items.length; i++) { // indexed: a for-of allocates a result per step until optimized
    const item = items[i] as Item
    const raw = item.raw
    if (!isRecord(raw)) {
      sink.add('', item.loc, `expected a Kubernetes object, got ${describe(raw)}`)
      continue
    }
    let kind = field(raw, 'kind')
    if (kind === undefined) kind = item.kind
    if (typeof kind !== 'string' || kind === '') {
      sink.add('', joinPath(item.loc, 'kind'), `expected the object's kind (such as "Service"), got ${describe(kind)}`)
      continue
    }
    const id = identify(raw)
    const spec = KINDS.get(kind)
    if (spec === undefined) {
      const where = id === null ? (item.loc === '' ? '(unnamed)' : `at ${item.loc}`) : clip(`${id.namespace}/${id.name}`)
      warnings.push(`${file}: skipping ${clip(kind)} ${where} ${SKIP_NOTE}`)
      continue
    }
    const named = id === null ? null : { kind, namespace: id.namespace, name: id.name }
    const ref = named === null ? '' : objectRef(named)
    const ctx = new Ctx(sink, ref, id === null ? item.loc : '')

    const apiVersion = field(raw, 'apiVersion') ?? item.apiVersion
    if (typeof apiVersion !== 'string' || !spec.apiVersions.includes(apiVersion)) {
      const expected = spec.apiVersions.map((v) => JSON.stringify(v)).join(' or ')
      ctx.issue('apiVersion', `expected ${expected} for kind ${kind}, got ${describe(apiVersion)}`)
    }
    strings.scan(ctx, raw)
    const obj = spec.parse(ctx, raw)

    if (named !== null) {
      const key = objectKey(named)
      const first = seen?.get(key)
      if (first !== undefined) {
        ctx.issue('', `expected each object once, got ${ref} again (first at ${first === '' ? 'the top' : first}, again at ${item.loc})`)
        continue
      }
      seen?.set(key, item.loc)
    }
    if (obj !== undefined) {
      objects.push(obj)
      placed.push({ obj, ctx })
    }
  }

  strings.release()
  spareScan = strings
  if (sink.issues.length === 0) checkSelfLoops(placed)
  if (sink.issues.length > 0) throw new ValidationError(sink.final())
  return { objects, warnings }
}

function utf8Length (s: string): number {
  // UTF-8 needs at most 3 bytes per UTF-16 unit, so short strings skip the exact count.
  return s.length * 3 <= MAX_STRING_BYTES ? s.length : Buffer.byteLength(s, 'utf8')
}

let spareScan: StringScan | null = null

/**
 * Refuses any string (or key) over 1 MiB anywhere in an object, including fields svcproxy ignores.
 * Reused for every object and the next document: the walk keeps its pending values and the objects
 * it has visited in flat arrays instead of an object and a Set per value (a load of 100,000
 * endpoints visits ~350,000 values). A path is built only for an issue, from the visited keys.
 */
class StringScan {
  // Pending values, their parent (an index into the visited arrays; -1 for the root) and their key there.
  private readonly pendV: unknown[] = []
  private readonly pendUp: number[] = []
  private readonly pendKey: Array<string | number> = []
  // Visited objects and arrays of the current root, in order: each is visited once (shared or cyclic values).
  private readonly seenV: Array<object | undefined> = []
  private readonly seenUp: number[] = []
  private readonly seenKey: Array<string | number> = []
  private seenSet: Set<object> | null = null
  private readonly keys: string[] = []
  private nSeen = 0
  private nPend = 0

  scan (ctx: Ctx, root: Raw): void {
    this.nSeen = 0
    this.seenSet = null
    this.push(root, -1, '')
    while (this.nPend > 0) {
      const n = --this.nPend
      const v = this.pendV[n]
      const up = this.pendUp[n] ?? -1
      const key = this.pendKey[n] ?? ''
      if (typeof v === 'string') {
        if (utf8Length(v) > MAX_STRING_BYTES) ctx.issue(this.pathOf(up, key), `expected a string of at most 1 MiB, got ${Buffer.byteLength(v, 'utf8')} bytes`)
        continue
      }
      if (typeof v !== 'object' || v === null) continue
      const self = this.visit(v, up, key)
      if (self < 0) continue
      // Pushed in reverse so issues come out in document order. Strings too short to be over the
      // limit, numbers, booleans and null are never pushed: nothing to report about them.
      if (Array.isArray(v)) {
        for (let i = v.length - 1; i >= 0; i--) {
          const x: unknown = v[i]
          if (typeof x === 'object' ? x !== null : typeof x === 'string' && x.length * 3 > MAX_STRING_BYTES) this.push(x, self, i)
        }
        continue
      }
      // Object.keys without its array per object: own enumerable keys, in the same order.
      const keys = this.keys
      let nKeys = 0
      for (const k in v) if (Object.hasOwn(v, k)) keys[nKeys++] = k
      for (let i = nKeys - 1; i >= 0; i--) {
        const k = keys[i] ?? ''
        if (utf8Length(k) > MAX_STRING_BYTES) {
          ctx.issue(this.pathOf(up, key), `expected property names of at most 1 MiB, got one of ${Buffer.byteLength(k, 'utf8')} bytes`)
          continue
        }
        const x: unknown = (v as Raw)[k]
        if (typeof x === 'object' ? x !== null : typeof x === 'string' && x.length * 3 > MAX_STRING_BYTES) this.push(x, self, k)
      }
    }
  }

  /** Lets go of the document's values; arrays grown by a big document are dropped, small ones kept for the next. */
  release (): void {
    this.seenSet = null
    clear(this.pendV)
    clear(this.pendKey)
    clear(this.seenV)
    clear(this.seenKey)
    clear(this.keys)
  }

  private push (v: unknown, up: number, key: string | number): void {
    const n = this.nPend++
    this.pendV[n] = v
    this.pendUp[n] = up
    this.pendKey[n] = key
  }

  /** Records `v` as visited and returns its index; -1 when it was visited from this root already. */
  private visit (v: object, up: number, key: string | number): number {
    if (this.seenSet !== null) {
      if (this.seenSet.has(v)) return -1
      this.seenSet.add(v)
    } else {
      // A scan of the few visited so far (most objects have under 20 values), a Set past those.
      for (let i = 0; i < this.nSeen; i++) if (this.seenV[i] === v) return -1
      if (this.nSeen >= 32) {
        this.seenSet = new Set([v])
        for (let i = 0; i < this.nSeen; i++) this.seenSet.add(this.seenV[i] ?? v)
      }
    }
    const n = this.nSeen++
    this.seenV[n] = v
    this.seenUp[n] = up
    this.seenKey[n] = key
    return n
  }

  /** The path of the value at `key` in the visited value `up` (-1: the root itself). */
  private pathOf (up: number, key: string | number): string {
    if (up < 0) return ''
    const keys: Array<string | number> = [key]
    for (let i = up; (this.seenUp[i] ?? -1) >= 0; i = this.seenUp[i] ?? -1) keys.push(this.seenKey[i] ?? '')
    let path = ''
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i] ?? ''
      path = typeof k === 'number' ? at(path, k) : child(path, k)
    }
    return path
  }
}

function clear (a: unknown[]): void {
  if (a.length > 256) a.length = 0
  else a.fill(undefined)
}
