// Errors carry a stable `code` so callers (and tests) branch on it, never on text.

export class SvcproxyError extends Error {
  readonly code: ErrorCode
  constructor (code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** One problem found in a document: where it is and what was expected. */
export interface ValidationIssue {
  /** File path, or a label such as `<apply>` / `redis:svcproxy:obj:...`. */
  file: string
  /** `Kind namespace/name`, or '' when the object could not be identified. */
  object: string
  /** JSON path inside the object, e.g. `spec.ports[1].targetPort`; '' for the document itself. */
  path: string
  /** What was expected (and what was found). */
  message: string
}

export function formatIssue (i: ValidationIssue): string {
  const where = [i.file, i.object, i.path].filter((s) => s !== '').join(': ')
  return `${where}: ${i.message}`
}

/** A document (or apply) was rejected whole; `issues` lists every problem found. */
export class ValidationError extends SvcproxyError {
  readonly issues: ValidationIssue[]
  constructor (issues: ValidationIssue[]) {
    const head = issues.length === 1 ? '1 validation error' : `${issues.length} validation errors`
    super('SVCPROXY_INVALID', `${head}:\n${issues.map(formatIssue).join('\n')}`)
    this.issues = issues
  }
}

/** A configuration value (flag, option, duration) is malformed. */
export class ConfigError extends SvcproxyError {
  constructor (message: string) {
    super('SVCPROXY_CONFIG', message)
  }
}

/** A file could not be read (missing, unreadable, too large). */
export class FileError extends SvcproxyError {
  constructor (file: string, message: string, options?: { cause?: unknown }) {
    super('SVCPROXY_FILE', `${file}: ${message}`, options)
  }
}

/** A service, or a port of it, that the caller named does not exist. */
export class NotFoundError extends SvcproxyError {
  constructor (message: string) {
    super('SVCPROXY_NOT_FOUND', message)
  }
}

/** The proxy was closed; no further operation is possible. */
export class ClosedError extends SvcproxyError {
  constructor (message = 'proxy is closed') {
    super('SVCPROXY_CLOSED', message)
  }
}

/**
 * The Redis store failed: UNAVAILABLE (cannot reach it), CONFLICT (too many concurrent writers
 * won the race), CORRUPT (its keys hold something svcproxy did not write).
 */
export class StoreError extends SvcproxyError {
  constructor (code: 'SVCPROXY_STORE_UNAVAILABLE' | 'SVCPROXY_STORE_CONFLICT' | 'SVCPROXY_STORE_CORRUPT', message: string, options?: { cause?: unknown }) {
    super(code, message, options)
  }
}

/** An admin address could not be bound (in use, not local, no permission). */
export class AdminListenError extends SvcproxyError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('SVCPROXY_LISTEN', message, options)
  }
}

/** The daemon's admin endpoint did not answer (not running, wrong address, not svcproxy). */
export class UnreachableError extends SvcproxyError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('SVCPROXY_UNREACHABLE', message, options)
  }
}

/**
 * The VIP interface (--vip-interface) cannot be managed: no CAP_NET_ADMIN, no `ip` command, or
 * the link cannot be created. The daemon does not start (an address it must own could not be).
 */
export class VipError extends SvcproxyError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('SVCPROXY_VIP', message, options)
  }
}

/**
 * proxy.waitFor() saw no event it waited for in time. The message names the event and the
 * predicate (its description, else its source) and how many events of that name did not match.
 */
export class WaitTimeoutError extends SvcproxyError {
  /** The event name waited for. */
  readonly event: string
  /** What was awaited: the predicate's description or source ('' when any event would do). */
  readonly predicate: string
  readonly timeoutMs: number
  /** Events of that name seen meanwhile that the predicate refused. */
  readonly seen: number
  /** The last of them (undefined when none was seen). */
  readonly last: unknown
  constructor (event: string, predicate: string, timeoutMs: number, seen: number, last: unknown, message: string) {
    super('SVCPROXY_TIMEOUT', message)
    this.event = event
    this.predicate = predicate
    this.timeoutMs = timeoutMs
    this.seen = seen
    this.last = last
  }
}

/** A proxy.events() iterator fell further behind than its bufferSize: it ends with this, its listeners gone. */
export class EventOverflowError extends SvcproxyError {
  readonly bufferSize: number
  constructor (bufferSize: number, message: string) {
    super('SVCPROXY_EVENTS_OVERFLOW', message)
    this.bufferSize = bufferSize
  }
}

/**
 * A fault (toxic) or its scope was refused by proxy.faults: the message names the field and what
 * was expected (`toxic.attributes.latency: expected a number ≥ 0 ..., got -5`), or the toxic
 * that already exists or does not. Nothing was changed.
 */
export class FaultError extends SvcproxyError {
  constructor (message: string) {
    super('SVCPROXY_FAULT', message)
  }
}

/** A listener that could not bind: which service port, where, and why. */
export interface BindFailure {
  /** `namespace/name`. */
  service: string
  /** The service port's name, or its number when unnamed. */
  port: string
  protocol: 'TCP' | 'UDP'
  /** Which kind of frontend: clusterIP, externalIP, loadBalancer, nodePort, healthCheck. */
  kind: string
  /** `host:port` it tried to bind (`[v6]:port` for IPv6). */
  address: string
  /** The socket's error, such as `EADDRINUSE: listen EADDRINUSE: address already in use ...`. */
  error: string
}

export function formatBindFailure (f: BindFailure): string {
  return `${f.service}:${f.port} ${f.protocol} ${f.address} (${f.kind}): ${f.error}`
}

/**
 * A write was applied but some of its listeners could not bind (only with `strictBind`). The
 * table holds the change: the desired state is right, and the sockets are retried with backoff.
 */
export class BindError extends SvcproxyError {
  readonly failed: BindFailure[]
  /** Table revision after the write (the change is applied). */
  readonly revision: number
  constructor (failed: BindFailure[], revision: number) {
    const head = failed.length === 1 ? '1 listener could not bind' : `${failed.length} listeners could not bind`
    super('SVCPROXY_BIND', `${head} (the change is applied at revision ${revision}; they are retried with backoff):\n${failed.map(formatBindFailure).join('\n')}`)
    this.failed = failed
    this.revision = revision
  }
}

/**
 * Every code an SvcproxyError can carry, with the class that raises it. The constructor takes
 * only these, so a new code starts here; docs/errors.md says what each means to the user and
 * test/registries.test.ts fails when the two lists differ.
 */
export const ERROR_CODES = {
  SVCPROXY_CONFIG: { class: 'ConfigError', meaning: 'a flag, option or value is malformed or missing (the CLI exits 2)' },
  SVCPROXY_FILE: { class: 'FileError', meaning: 'a file could not be read: missing, unreadable, a directory or over 64 MiB' },
  SVCPROXY_INVALID: { class: 'ValidationError', meaning: 'a document or write was rejected whole; `issues` lists every problem' },
  SVCPROXY_NOT_FOUND: { class: 'NotFoundError', meaning: 'the service or port the caller named does not exist or is not listening' },
  SVCPROXY_CLOSED: { class: 'ClosedError', meaning: 'the proxy was closed; no further write is possible' },
  SVCPROXY_STORE_UNAVAILABLE: { class: 'StoreError', meaning: 'the Redis store cannot be reached (or refused the login), or no URL was given' },
  SVCPROXY_STORE_CONFLICT: { class: 'StoreError', meaning: 'a store write lost the race to other writers on every attempt' },
  SVCPROXY_STORE_CORRUPT: { class: 'StoreError', meaning: 'a store key holds something svcproxy did not write' },
  SVCPROXY_LISTEN: { class: 'AdminListenError', meaning: 'an admin address (--healthz-bind-address, --metrics-bind-address) could not be bound' },
  SVCPROXY_UNREACHABLE: { class: 'UnreachableError', meaning: '`svcproxy status` found no svcproxy answering at the admin address' },
  SVCPROXY_BIND: { class: 'BindError', meaning: 'a write was applied but some of its listeners could not bind (createProxy strictBind); they are retried' },
  SVCPROXY_VIP: { class: 'VipError', meaning: 'the --vip-interface link cannot be managed: no CAP_NET_ADMIN, no `ip` command, or the link cannot be created' },
  SVCPROXY_FAULT: { class: 'FaultError', meaning: 'a toxic or its scope was refused by proxy.faults (a field out of range, a duplicate or unknown name); nothing changed' },
  SVCPROXY_TIMEOUT: { class: 'WaitTimeoutError', meaning: 'proxy.waitFor() saw no matching event in time; the message names the event and the predicate' },
  SVCPROXY_EVENTS_OVERFLOW: { class: 'EventOverflowError', meaning: 'a proxy.events() iterator was not read fast enough and held more than its bufferSize events' },
} as const satisfies Record<`SVCPROXY_${string}`, { class: string, meaning: string }>

export type ErrorCode = keyof typeof ERROR_CODES
