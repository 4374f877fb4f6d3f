// The last-known-good snapshot (--state-file): what a node serves when Redis is unreachable at
// start or comes back empty. Records are kept as the store's own JSON text, so loading goes
// through the same per-record validation as a list from Redis.

import { randomBytes } from 'node:crypto'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { dirname, basename, join } from 'node:path'
import type { Logger } from 'pino'

export const STATE_FORMAT = 'svcproxy/redis-state@1'

export interface StateSnapshot {
  epoch: string
  revision: number
  /** `Kind/ns/name` → stored JSON text. */
  records: Map<string, string>
}

/**
 * Atomic: a reader (or a crash) sees the old file or the new one, never half of one. Written
 * 0600 because it mirrors the store, which may hold what operators keep private.
 */
export async function writeStateFile (path: string, snap: StateSnapshot): Promise<void> {
  const body = JSON.stringify({
    format: STATE_FORMAT,
    epoch: snap.epoch,
    revision: snap.revision,
    writtenAt: new Date().toISOString(),
    objects: Object.fromEntries(snap.records),
  })
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.tmp`)
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(body)
    await fh.sync() // the rename must not land before the bytes do
  } catch (err) {
    await fh.close().catch(() => {})
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fh.close()
  try {
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw err
  }
}

/** null when there is no file; throws when it exists but is not a state file. */
export async function readStateFile (path: string): Promise<StateSnapshot | null> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  const v: unknown = JSON.parse(text)
  if (typeof v !== 'object' || v === null) throw new Error('not a JSON object')
  const o = v as Record<string, unknown>
  if (o.format !== STATE_FORMAT) throw new Error(`expected format "${STATE_FORMAT}", got ${JSON.stringify(o.format)}`)
  if (typeof o.epoch !== 'string' || typeof o.revision !== 'number' || typeof o.objects !== 'object' || o.objects === null) {
    throw new Error('expected epoch, revision and objects')
  }
  const records = new Map<string, string>()
  for (const [k, t] of Object.entries(o.objects as Record<string, unknown>)) if (typeof t === 'string') records.set(k, t)
  return { epoch: o.epoch, revision: o.revision, records }
}

/** At most one state file write per this long: each write is the whole store (O(store)), a change is not. */
export const STATE_FILE_MIN_INTERVAL_MS = 1000

/**
 * Writes the snapshot after each applied batch. Coalesced: at most one write in flight, at most
 * one per STATE_FILE_MIN_INTERVAL_MS, and the last one always holds the newest state (`snapshot`
 * is read when a write starts, not when asked).
 */
export class StateFileWriter {
  private writing: Promise<void> | null = null
  private dirty = false
  private lastWriteAt = 0

  constructor (private readonly path: string, private readonly snapshot: () => StateSnapshot, private readonly log: Logger) {}

  /** The write in flight, if any (close() waits for it). */
  get pending (): Promise<void> | null { return this.writing }

  save (): void {
    this.dirty = true
    if (this.writing !== null) return
    this.writing = (async () => {
      while (this.dirty) {
        const wait = this.lastWriteAt + STATE_FILE_MIN_INTERVAL_MS - Date.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        this.dirty = false
        this.lastWriteAt = Date.now()
        try {
          await writeStateFile(this.path, this.snapshot())
        } catch (err) {
          this.log.error({ stateFile: this.path, err: (err as Error).message }, 'cannot write the state file')
        }
      }
      this.writing = null
    })()
  }
}
