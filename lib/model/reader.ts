// Typed, issue-collecting accessors over untrusted decoded JSON. Every reader
// reports a problem and returns a fallback instead of throwing, so one pass over
// a document finds all of its issues.

import type { ValidationIssue } from '../errors.js'
import type { Protocol } from './types.js'

export type Raw = Record<string, unknown>

/** A string field longer than this is refused: no real manifest field comes close, and it bounds memory per value. */
export const MAX_STRING_BYTES = 1024 * 1024

/** More issues than this are summarised: a 64 MiB document of junk must not build a gigantic message. */
export const MAX_ISSUES = 1000

export function isRecord (v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Own properties only, so inherited keys (`constructor`, `__proto__`) never read as data; null means absent, as in Go's decoder. */
export function field (o: Raw, key: string): unknown {
  if (!Object.hasOwn(o, key)) return undefined
  const v = o[key]
  return v === null ? undefined : v
}

/** A record that `__proto__` or `constructor` keys cannot pollute. */
export function safeRecord (): Record<string, string> {
  return Object.create(null) as Record<string, string>
}

/**
 * What an absent labels, annotations or selector map reads as: one frozen record shared by every
 * object (most have none), not two dictionary-mode objects per object of a 100,000-object load.
 */
export const EMPTY_RECORD: Record<string, string> = Object.freeze(safeRecord())

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/

/** Appends a key to a JSON path, bracket-quoting keys that contain dots, slashes and the like. */
export function child (path: string, key: string): string {
  if (!IDENT.test(key)) return `${path}[${JSON.stringify(key)}]`
  return path === '' ? key : `${path}.${key}`
}

export function at (path: string, i: number): string {
  return `${path}[${i}]`
}

export function joinPath (prefix: string, path: string): string {
  if (prefix === '') return path
  if (path === '') return prefix
  return path.startsWith('[') ? prefix + path : `${prefix}.${path}`
}

/** Renders a found value for a message, cutting long strings so the message stays readable. */
export function describe (v: unknown): string {
  if (v === undefined) return 'nothing'
  if (v === null) return 'null'
  switch (typeof v) {
    case 'string':
      return v.length > 64 ? `${JSON.stringify(v.slice(0, 64))}... (${v.length} characters)` : JSON.stringify(v)
    case 'number':
    case 'boolean':
      return String(v)
    case 'bigint':
      return `bigint ${String(v)}`
    case 'object':
      return Array.isArray(v) ? 'an array' : 'an object'
    default:
      return `a ${typeof v}`
  }
}

export function isPortNumber (v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535
}

/** Collects the issues of one document, up to MAX_ISSUES. */
export class IssueSink {
  readonly issues: ValidationIssue[] = []
  dropped = 0
  constructor (readonly file: string) {}

  add (object: string, path: string, message: string): void {
    if (this.issues.length < MAX_ISSUES) this.issues.push({ file: this.file, object, path, message })
    else this.dropped++
  }

  /** The list to throw with, including a note for any issues left out. */
  final (): ValidationIssue[] {
    if (this.dropped === 0) return this.issues
    return [...this.issues, { file: this.file, object: '', path: '', message: `${this.dropped} more issues not shown` }]
  }
}

/** Issue reporting and field readers for one object; `prefix` locates objects that have no usable name. */
export class Ctx {
  constructor (readonly sink: IssueSink, readonly object: string, readonly prefix: string) {}

  issue (path: string, message: string): void {
    this.sink.add(this.object, joinPath(this.prefix, path), message)
  }

  /** Optional string: undefined when absent. */
  str (o: Raw, key: string, parent: string): string | undefined {
    const v = field(o, key)
    if (v === undefined || typeof v === 'string') return v
    this.issue(child(parent, key), `expected a string, got ${describe(v)}`)
    return undefined
  }

  bool (o: Raw, key: string, parent: string, dflt: boolean): boolean {
    const v = field(o, key)
    if (v === undefined) return dflt
    if (typeof v === 'boolean') return v
    this.issue(child(parent, key), `expected true or false, got ${describe(v)}`)
    return dflt
  }

  /** Optional array: [] when absent. */
  list (o: Raw, key: string, parent: string): unknown[] {
    const v = field(o, key)
    if (v === undefined) return []
    if (Array.isArray(v)) return v
    this.issue(child(parent, key), `expected an array, got ${describe(v)}`)
    return []
  }

  /** Optional object: undefined when absent. */
  obj (o: Raw, key: string, parent: string): Raw | undefined {
    const v = field(o, key)
    if (v === undefined || isRecord(v)) return v
    this.issue(child(parent, key), `expected an object, got ${describe(v)}`)
    return undefined
  }

  /** Labels, annotations, selectors: an object of string values. */
  stringMap (o: Raw, key: string, parent: string): Record<string, string> {
    const m = this.obj(o, key, parent)
    if (m === undefined) return EMPTY_RECORD
    const out = safeRecord()
    const path = child(parent, key)
    for (const k of Object.keys(m)) {
      const v = m[k]
      if (typeof v === 'string') out[k] = v
      else this.issue(child(path, k), `expected a string value, got ${describe(v)}`)
    }
    return out
  }

  oneOf<T extends string> (o: Raw, key: string, parent: string, allowed: readonly T[], dflt: T): T {
    const v = field(o, key)
    if (v === undefined) return dflt
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T
    this.issue(child(parent, key), `expected one of ${allowed.join(', ')}, got ${describe(v)}`)
    return dflt
  }

  /** A required port number 1-65535; undefined after reporting when invalid. */
  port (o: Raw, key: string, parent: string): number | undefined {
    const v = field(o, key)
    if (isPortNumber(v)) return v
    this.issue(child(parent, key), `expected an integer 1-65535, got ${describe(v)}`)
    return undefined
  }

  /** TCP when absent; SCTP gets its own message because it is valid Kubernetes that svcproxy cannot serve. */
  protocol (o: Raw, key: string, parent: string): Protocol | undefined {
    const v = field(o, key)
    if (v === undefined || v === 'TCP') return 'TCP'
    if (v === 'UDP') return 'UDP'
    if (v === 'SCTP') this.issue(child(parent, key), 'SCTP is not supported by svcproxy (expected TCP or UDP)')
    else this.issue(child(parent, key), `expected TCP or UDP, got ${describe(v)}`)
    return undefined
  }
}
