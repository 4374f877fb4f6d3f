// Errors carry a stable `code` so callers (and tests) branch on it, never on text.

export class SvcproxyError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
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
  constructor () {
    super('SVCPROXY_CLOSED', 'proxy is closed')
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
