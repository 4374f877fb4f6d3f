// The worker thread of readDocumentFileOffThread (read-off-thread.ts): reads a manifest file,
// hashes it, parses and validates it here, off the main thread, then hands the objects over as
// JSON text, one batch of about BATCH_CHARS each time the main thread asks for the next. The raw
// document (a 50 MB string and its tree) never reaches the main thread's heap.
import { createHash } from 'node:crypto'
import { type MessagePort, parentPort } from 'node:worker_threads'
import { ValidationError } from '../errors.js'
import { parseDocumentBytes, readDocumentBytes } from './document.js'
import type { ReaderReply, ReaderRequest } from './read-off-thread.js'
import type { KubeObject } from './types.js'

/** JSON text per batch: a few ms of JSON.parse on the main thread. */
export const BATCH_CHARS = 256 * 1024

function batches (objects: KubeObject[]): string[] {
  const out: string[] = []
  let parts: string[] = []
  let size = 0
  for (const o of objects) {
    const json = JSON.stringify(o)
    parts.push(json)
    size += json.length + 1
    if (size >= BATCH_CHARS) {
      out.push(`[${parts.join(',')}]`)
      parts = []
      size = 0
    }
  }
  if (parts.length > 0) out.push(`[${parts.join(',')}]`)
  return out
}

/** The batches of the read being handed over; emptied as they go, so nothing is kept twice. */
let pending: string[] = []
let next = 0

async function read (port: MessagePort, path: string, unlessHash: string): Promise<void> {
  const reply = (m: ReaderReply): void => { port.postMessage(m) }
  pending = []
  next = 0
  try {
    const bytes = await readDocumentBytes(path)
    const hash = createHash('sha256').update(bytes).digest('hex')
    if (hash === unlessHash) { reply({ type: 'unchanged', hash, bytes: bytes.length }); return }
    const doc = parseDocumentBytes(bytes, path)
    pending = batches(doc.objects)
    reply({ type: 'parsed', hash, warnings: doc.warnings, objects: doc.objects.length, bytes: bytes.length })
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err))
    const code = (e as { code?: unknown }).code
    reply({ type: 'failed', code: typeof code === 'string' ? code : '', message: e.message, issues: e instanceof ValidationError ? e.issues : [] })
  }
}

const port = parentPort
port?.on('message', (m: ReaderRequest) => {
  if (m.type === 'read') { void read(port, m.path, m.unlessHash); return }
  const json = pending[next]
  if (json === undefined) return
  pending[next++] = ''
  port.postMessage({ type: 'batch', json } satisfies ReaderReply)
})
