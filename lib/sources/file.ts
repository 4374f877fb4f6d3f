import { type FSWatcher, watch } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import type { Logger } from 'pino'
import { ValidationError, formatIssue } from '../errors.js'
import { readDocumentFileOffThread } from '../model/read-off-thread.js'
import type { ServiceProxy } from '../api/service-proxy.js'
import type { SourceHealth } from './health.js'

export interface FileSourceOptions {
  logger?: Logger
  /** Coalesce bursts of fs events (editors write in several steps). */
  debounceMs?: number
  /** Safety-net poll; fs.watch misses events on some filesystems and across symlink swaps. */
  pollIntervalMs?: number
  /** How long an invalid read may still be a half-written file before it is reported. */
  settleMs?: number
  /** Called after each load attempt (tests and health use it). */
  onSync?: (ok: boolean, err?: Error) => void
}

export interface FileSource {
  readonly path: string
  /** Last successful apply time (ms epoch), 0 before the first. */
  readonly lastSyncedAt: number
  readonly lastError: Error | null
  /** Freshness for /healthz and /readyz. A file source is never stale: the file is the truth. */
  health (): SourceHealth
  /** Re-reads the file now (SIGHUP). Resolves true when the file was valid. */
  reload (): Promise<boolean>
  close (): void
}

/** Formats an error the way `svcproxy validate` prints it: one problem a line. */
export function describeError (err: unknown): string[] {
  if (err instanceof ValidationError) return err.issues.map(formatIssue)
  if (err instanceof Error) return [err.message]
  return [String(err)]
}

/**
 * Serves a manifest file and follows its changes: in-place writes, rename-over saves and
 * symlink swaps (ConfigMap mounts replace a `..data` symlink in the directory). The directory
 * is watched, not the file, because the file's inode changes under the last two; a slow poll
 * backs the watcher up. A bad edit keeps the last good state serving.
 *
 * The first load must succeed (the returned promise rejects otherwise), so a daemon never
 * starts on a broken file.
 */
export async function watchConfigFile (path: string, proxy: ServiceProxy, opts: FileSourceOptions = {}): Promise<FileSource> {
  const file = resolve(path)
  const log = opts.logger ?? proxy.logger
  const debounceMs = opts.debounceMs ?? 50
  const settleMs = opts.settleMs ?? 250
  let lastHash = ''
  let lastSyncedAt = 0
  let lastError: Error | null = null
  let lastStat = ''
  let timer: NodeJS.Timeout | null = null
  let running: Promise<boolean> | null = null
  /** The bytes (hash) the proxy last refused, and its answer. */
  let refused: { hash: string, err: unknown } = { hash: '', err: null }
  /** The file version (fingerprint) of the last rejected load: read again on a stray event, it is the same edit. */
  let rejectedStat = ''
  let again = false
  let closed = false

  const fingerprint = async (): Promise<string> => {
    try {
      const s = await stat(file) // follows symlinks: a swapped target changes ino
      return `${s.ino}:${s.size}:${s.mtimeMs}`
    } catch {
      return 'missing'
    }
  }

  const loadOnce = async (): Promise<boolean> => {
    // Read, hashed, parsed and validated on a worker thread (a big file must not stall the data
    // path), then applied in slices (ServiceProxy.replace); one read, so the hash is the content's.
    const { hash, doc } = await readDocumentFileOffThread(file, lastHash)
    if (doc === null) return true // unchanged
    // The same bytes the proxy refused a moment ago get the same answer without asking again:
    // each ask counted a sync error, so one conflict counted 5-6 across the settle window.
    if (hash === refused.hash) throw refused.err
    for (const w of doc.warnings) log.warn(w)
    const res = await proxy.replace(doc.objects, file).catch((err: unknown) => {
      if (err instanceof ValidationError) refused = { hash, err } // a verdict on the bytes, not a passing failure
      throw err
    })
    lastHash = hash
    lastSyncedAt = Date.now()
    lastError = null
    log.info({ file, revision: res.revision, changed: res.changed.length }, 'config applied')
    return true
  }

  // Retries a failing read for `settleMs`: an editor or a writer may be mid-write. A load that
  // ends rejected is one sync error (svcproxy_sync_errors_total), however many attempts it made.
  const load = async (initial: boolean): Promise<boolean> => {
    const deadline = Date.now() + settleMs
    let counted = false
    for (;;) {
      try {
        return await loadOnce()
      } catch (err) {
        counted ||= proxy.syncStats.hasCounted(err) // the proxy counted the write it refused
        if (Date.now() < deadline && !closed) {
          await new Promise((resolve) => setTimeout(resolve, Math.min(50, settleMs)))
          continue
        }
        lastError = err instanceof Error ? err : new Error(String(err))
        const fp = await fingerprint()
        if (!counted && fp !== rejectedStat) proxy.syncStats.fail(err)
        rejectedStat = fp
        if (initial) throw err
        log.error({ file, errors: describeError(err) }, 'config rejected; still serving the last good state')
        return false
      } finally {
        lastStat = await fingerprint()
      }
    }
  }

  const trigger = (): void => {
    if (closed) return
    if (timer !== null) clearTimeout(timer)
    timer = setTimeout(() => {
      timer = null
      void run()
    }, debounceMs)
  }

  const run = async (): Promise<boolean> => {
    if (running !== null) {
      again = true
      return running
    }
    running = load(false)
    try {
      const ok = await running
      opts.onSync?.(ok, lastError ?? undefined)
      return ok
    } finally {
      running = null
      if (again && !closed) {
        again = false
        trigger()
      }
    }
  }

  await load(true)
  opts.onSync?.(true)

  let watcher: FSWatcher | null = null
  try {
    const name = basename(file)
    watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
      // A ConfigMap swap renames `..data`; anything else in the directory may be our file.
      if (changed === null || changed === name || changed.startsWith('..')) trigger()
    })
    watcher.on('error', () => { /* the poll below keeps us going */ })
  } catch (err) {
    log.warn({ file, err: (err as Error).message }, 'cannot watch directory; polling only')
  }
  const poll = setInterval(() => {
    void fingerprint().then((fp) => { if (fp !== lastStat) trigger() })
  }, opts.pollIntervalMs ?? 1000)
  poll.unref()

  return {
    path: file,
    get lastSyncedAt () { return lastSyncedAt },
    get lastError () { return lastError },
    health: () => ({ kind: 'file', synced: lastSyncedAt > 0, stale: false, reason: lastError === null ? '' : 'last edit rejected', lastSyncedAt, revision: proxy.table.revision }),
    reload: async () => {
      lastHash = '' // an explicit reload re-applies even an unchanged file
      refused = { hash: '', err: null } // and asks again about one refused before
      rejectedStat = ''
      const ok = await run()
      await proxy.retryFailedListeners() // SIGHUP rebinds listeners in error, even when the file is rejected
      return ok
    },
    close: () => {
      closed = true
      if (timer !== null) clearTimeout(timer)
      clearInterval(poll)
      watcher?.close()
    },
  }
}
