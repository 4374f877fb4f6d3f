import { Worker } from 'node:worker_threads'
import { FileError, ValidationError, type ValidationIssue } from '../errors.js'
import type { ParsedDocument } from './document.js'
import type { KubeObject } from './types.js'

/** A file read off the main thread: its SHA-256, and its objects (null when the hash was `unlessHash`). */
export interface DocumentRead {
  hash: string
  doc: ParsedDocument | null
}

/** What read-worker.ts is asked, and what it answers. */
export type ReaderRequest = { type: 'read', path: string, unlessHash: string } | { type: 'next' }
export type ReaderReply =
  | { type: 'unchanged', hash: string, bytes: number }
  | { type: 'parsed', hash: string, warnings: string[], objects: number, bytes: number }
  | { type: 'batch', json: string }
  | { type: 'failed', code: string, message: string, issues: ValidationIssue[] }

/**
 * How long the worker is kept after a read. Edits come in bursts (an editor's saves, a
 * ConfigMap swap and its SIGHUP), and a thread costs a start (~80 ms from dist/, seconds under
 * a TypeScript loader); once idle this long it ends, and the heap that held the document with it.
 */
export const READER_LINGER_MS = 5000

/** After reading a file bigger than this the worker ends at once: its heap (several times the file) is given back now. */
export const READER_KEEP_MAX_BYTES = 16 * 1024 * 1024

// From dist/ the worker is read-worker.js; under a TypeScript loader (the tests) it is .ts.
const WORKER_URL = new URL(import.meta.url.endsWith('.ts') ? './read-worker.ts' : './read-worker.js', import.meta.url)

interface Reader {
  worker: Worker
  /** The read in progress: gets the worker's messages, or its death. */
  onReply: ((m: ReaderReply) => void) | null
  onDeath: ((err: Error) => void) | null
  linger: NodeJS.Timeout | null
}

let reader: Reader | null = null
/** Reads run one at a time, in order. */
let queue: Promise<unknown> = Promise.resolve()

/**
 * The thread inherits this process's Node options, as a worker does by default (under the tests,
 * the TypeScript loader's --import). One of them, --input-type (`node --input-type=module -e`),
 * is refused for a worker started from a file; then the thread starts from a one-line script that
 * imports the worker module instead (passing explicit options would not do: a worker refuses
 * process-wide ones such as --expose-gc).
 */
function newWorker (): Worker {
  if (!process.execArgv.some((a) => a === '--input-type' || a.startsWith('--input-type='))) return new Worker(WORKER_URL)
  return new Worker(`import(${JSON.stringify(WORKER_URL.href)})`, { eval: true })
}

function startReader (): Reader {
  const r: Reader = { worker: newWorker(), onReply: null, onDeath: null, linger: null }
  const die = (err: Error): void => {
    if (reader === r) reader = null
    if (r.linger !== null) clearTimeout(r.linger)
    r.onDeath?.(err)
  }
  r.worker.on('message', (m: ReaderReply) => { r.onReply?.(m) })
  r.worker.on('error', die)
  r.worker.on('exit', (code) => { die(new Error(`the document reader thread stopped (exit code ${code})`)) })
  return r
}

/**
 * `readDocumentFile` on a worker thread, so that a reload of a 50 MB manifest does not stall the
 * data path: the worker reads, hashes, parses and validates; when the file's SHA-256 is
 * `unlessHash` it stops there. The objects come back as JSON text in batches of about 256 KiB,
 * each asked for on its own event-loop turn, so the main thread spends a few ms at a time
 * decoding them (JSON costs it less than structured clone: docs/performance.md). Rejects as
 * `readDocumentFile` does (FileError, ValidationError).
 */
export function readDocumentFileOffThread (path: string, unlessHash = ''): Promise<DocumentRead> {
  const run = queue.then(() => readOnce(path, unlessHash))
  queue = run.catch(() => {})
  return run
}

function readOnce (path: string, unlessHash: string): Promise<DocumentRead> {
  const r = reader ?? (reader = startReader())
  if (r.linger !== null) { clearTimeout(r.linger); r.linger = null }
  r.worker.ref()
  return new Promise<DocumentRead>((resolve, reject) => {
    const objects: KubeObject[] = []
    let parsed: Extract<ReaderReply, { type: 'parsed' }> | null = null
    let size = 0
    const finish = (err: Error | null, read?: DocumentRead): void => {
      r.onReply = null
      r.onDeath = null
      if (reader === r && size > READER_KEEP_MAX_BYTES) {
        reader = null
        void r.worker.terminate()
      } else if (reader === r) {
        r.worker.unref() // an idle reader never keeps the process alive
        r.linger = setTimeout(() => { if (reader === r) { reader = null; void r.worker.terminate() } }, READER_LINGER_MS)
        r.linger.unref()
      }
      if (err !== null) reject(err)
      else resolve(read as DocumentRead)
    }
    const next = (): void => { if (r.onReply !== null) r.worker.postMessage({ type: 'next' } satisfies ReaderRequest) }
    r.onDeath = (err) => { finish(err) }
    r.onReply = (m) => {
      if (m.type === 'unchanged') {
        size = m.bytes
        finish(null, { hash: m.hash, doc: null })
      } else if (m.type === 'failed') finish(readerError(m, path))
      else if (m.type === 'parsed') {
        parsed = m
        size = m.bytes
        if (m.objects === 0) finish(null, { hash: m.hash, doc: { objects, warnings: m.warnings } })
        else next()
      } else if (parsed !== null) {
        for (const o of JSON.parse(m.json) as KubeObject[]) objects.push(o)
        if (objects.length >= parsed.objects) finish(null, { hash: parsed.hash, doc: { objects, warnings: parsed.warnings } })
        else setImmediate(next) // the next batch on a later turn: ready I/O is served in between
      }
    }
    r.worker.postMessage({ type: 'read', path, unlessHash } satisfies ReaderRequest)
  })
}

function readerError (m: Extract<ReaderReply, { type: 'failed' }>, path: string): Error {
  if (m.code === 'SVCPROXY_INVALID') return new ValidationError(m.issues)
  const prefix = `${path}: `
  if (m.code === 'SVCPROXY_FILE') return new FileError(path, m.message.startsWith(prefix) ? m.message.slice(prefix.length) : m.message)
  return new Error(m.message)
}
