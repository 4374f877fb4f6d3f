import type { RedisTlsFiles } from '../../store/connect.js'
// The Redis source's public types (exported from lib/index.ts), apart from the code so that the
// source and its sync code can both name them without importing each other.

import type { Logger } from 'pino'
import type { SourceHealth } from '../health.js'

export interface RedisSourceOptions {
  /** redis://, rediss://, redis+sentinel://, redis+cluster:// */
  url: string
  prefix?: string
  logger?: Logger
  /** Resync period (--sync-period), default 30s: epoch and revision checked, a relist only when the watch missed something. */
  syncPeriodMs?: number
  /** Last-known-good snapshot (--state-file), written after each applied batch. */
  stateFile?: string
  /** XREAD BLOCK time; also how often an idle watch checks that the store was not wiped. Default 1s. */
  blockMs?: number
  /** Entries read per XREAD, default 512. */
  batch?: number
  /** How long watchRedis() waits for the first list before resolving anyway (Redis down), default 5s. */
  startTimeoutMs?: number
  /** PEM files for a rediss:// store: CA, client certificate and key (--redis-ca-file, --redis-cert-file, --redis-key-file). */
  tls?: RedisTlsFiles
  /** Called after each applied list or revision, in order (tests and benches use it). */
  onApplied?: (e: AppliedEvent) => void
}

export interface AppliedEvent {
  via: 'list' | 'watch' | 'state-file'
  revision: number
  /** Objects changed in the proxy by this step. */
  changed: number
}

export interface RedisSourceStats {
  /** Full lists done (the first one included). */
  lists: number
  /** Feed entries applied. */
  entries: number
  /** Reconnects that resumed the watch where it stopped (no relist). */
  resumes: number
  /** Relists forced because the feed no longer held the next revision. */
  gaps: number
  /** Records skipped because they did not validate. */
  badRecords: number
  /** Store commands that got no answer within the deadline (each reads as a lost store). */
  timeouts: number
}

export interface RedisSource {
  /** Last revision applied from the store. */
  readonly revision: number
  readonly stats: Readonly<RedisSourceStats>
  health: () => SourceHealth
  /** Resolves once something is served: the first list, or the state file. */
  synced: () => Promise<void>
  /** Relist at the next opportunity (SIGHUP). */
  resync: () => void
  close: () => Promise<void>
}
