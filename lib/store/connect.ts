// Where the store is: one URL names a standalone server, a Sentinel group or a Cluster, the
// three topologies ioredis supports. Everything that prints a URL goes through redactUrl.

import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import type { ConnectionOptions } from 'node:tls'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { ConfigError } from '../errors.js'

/**
 * PEM files for a rediss:// store (--redis-ca-file, --redis-cert-file, --redis-key-file): the CA
 * that signed the server's certificate (else Node's own roots), and a client certificate with its
 * key for a server with `tls-auth-clients yes`.
 */
export interface RedisTlsFiles {
  caFile?: string
  certFile?: string
  keyFile?: string
}

/** The client type the store and the source use; both classes share the command API. */
export type RedisClient = Redis | Cluster

export interface ConnectOptions {
  /** Name shown by CLIENT LIST (the tests find the source's connections by it). */
  connectionName?: string
  /**
   * CLI writers give up after a few attempts instead of reconnecting forever;
   * daemons keep retrying with backoff.
   */
  failFast?: boolean
  /**
   * A connection with a command out that receives nothing for this long counts as dead: it is
   * dropped (its commands fail) and reconnected. A SIGSTOPped server or a partition that drops
   * packets answers nothing while the TCP connection stays up; without a deadline every command
   * would simply wait. Data flowing resets the clock, so a long reply is never cut.
   */
  timeoutMs?: number
  /** Certificates for rediss:// (ignored for redis://, which redisTlsOptions refuses up front). */
  tls?: RedisTlsFiles
}

export interface ParsedRedisUrl {
  mode: 'standalone' | 'sentinel' | 'cluster'
  /** standalone: the URL as given (ioredis parses it, including rediss:// for TLS). */
  url: string
  hosts: Array<{ host: string, port: number }>
  /** sentinel: the master group name. */
  name: string
  username: string
  password: string
  db: number
  tls: boolean
}

/**
 * redis://[user:pass@]host:port[/db], rediss://... (TLS),
 * redis+sentinel://[user:pass@]h1:26379,h2:26379/MASTER[/db], redis+cluster://[user:pass@]h1:7000,h2:7001
 * (rediss+sentinel / rediss+cluster for TLS).
 */
export function parseRedisUrl (url: string): ParsedRedisUrl {
  const m = /^(rediss?)(?:\+(sentinel|cluster))?:\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?$/.exec(url.trim())
  if (m === null) throw new ConfigError(`--redis: expected redis://HOST:PORT, rediss://, redis+sentinel:// or redis+cluster://, got "${redactUrl(url)}"`)
  const [, scheme = 'redis', topo, auth = '', hostList = '', path = ''] = m
  let username = ''
  let password = ''
  if (auth !== '') {
    const i = auth.indexOf(':')
    username = decodeURIComponent(i < 0 ? auth : auth.slice(0, i))
    password = i < 0 ? '' : decodeURIComponent(auth.slice(i + 1))
  }
  const defaultPort = topo === 'sentinel' ? 26379 : 6379
  const hosts = hostList.split(',').map((h) => {
    const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(h)
    const port = Number(hm?.[2] ?? defaultPort)
    if (hm === null || port < 1 || port > 65535) throw new ConfigError(`--redis: bad host "${h}" in "${redactUrl(url)}"`)
    return { host: (hm[1] ?? '').replace(/^\[|\]$/g, ''), port }
  })
  const parts = path.split('/').filter((s) => s !== '')
  let name = ''
  if (topo === 'sentinel') {
    name = parts.shift() ?? ''
    if (name === '') throw new ConfigError(`--redis: a sentinel URL needs the master name as its path (redis+sentinel://h1:26379/mymaster), got "${redactUrl(url)}"`)
  }
  const dbText = parts[0] ?? '0'
  const db = Number(dbText)
  if (!/^\d+$/.test(dbText) || parts.length > 1) throw new ConfigError(`--redis: expected a database number as the URL path, got "${redactUrl(url)}"`)
  return { mode: topo === 'sentinel' ? 'sentinel' : topo === 'cluster' ? 'cluster' : 'standalone', url, hosts, name, username, password, db, tls: scheme === 'rediss' }
}

/** The URL with any password replaced by ***, for logs, errors and --help. */
export function redactUrl (url: string): string {
  return url.replace(/^([a-z+]+:\/\/)([^@/]*)@/i, (_all, scheme: string, auth: string) => {
    const i = auth.indexOf(':')
    return i < 0 ? `${scheme}${auth}@` : `${scheme}${auth.slice(0, i)}:***@`
  })
}

/** ioredis' own default backoff (exponential, capped, with jitter) so that nodes do not reconnect in lockstep. */
export function backoffMs (attempt: number, capMs = 5000): number {
  return Math.min(50 * 2 ** Math.min(attempt, 10), capMs) + Math.floor(Math.random() * 200)
}

/**
 * A client that fails commands at once while disconnected (no offline queue, no resend):
 * the store and the source decide themselves what to retry, so nothing is replayed twice.
 */
export function createClient (url: string, opts: ConnectOptions = {}): RedisClient {
  const p = parseRedisUrl(url)
  const common: RedisOptions = {
    connectionName: opts.connectionName,
    enableOfflineQueue: opts.failFast === true,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 5000,
    ...(opts.timeoutMs !== undefined ? { socketTimeout: opts.timeoutMs } : {}),
    retryStrategy: (n: number) => (opts.failFast === true && n > 2 ? null : backoffMs(n)),
    ...(p.username !== '' ? { username: p.username } : {}),
    ...(p.password !== '' ? { password: p.password } : {}),
    ...(p.tls ? { tls: redisTlsOptions(url, opts.tls) } : {}),
  }
  let client: RedisClient
  if (p.mode === 'cluster') {
    client = new Cluster(p.hosts, {
      redisOptions: common,
      enableOfflineQueue: common.enableOfflineQueue,
      clusterRetryStrategy: (n: number) => (opts.failFast === true && n > 2 ? null : backoffMs(n)),
    })
  } else if (p.mode === 'sentinel') {
    client = new Redis({ ...common, sentinels: p.hosts, name: p.name, db: p.db, ...(p.password !== '' ? { sentinelPassword: p.password } : {}), ...(p.tls ? { enableTLSForSentinelMode: true, sentinelTLS: common.tls } : {}) })
  } else {
    client = new Redis(url, common)
  }
  // ioredis prints "Unhandled error event" without a listener; callers attach their own logging too.
  // This listener runs first: it words TLS failures that arrive as a bare reset or timeout.
  if (p.tls) {
    let handshook = false
    client.on('ready', () => { handshook = true })
    client.on('error', (err: Error) => { if (!handshook) hintTls(err, (opts.tls?.certFile ?? '') !== '') })
  } else {
    client.on('error', () => {})
  }
  // ioredis takes only a stream's first 'error' (a `once` listener). A TLS socket can emit a
  // second one (the server's alert after the client refused its certificate): with no listener
  // left that is an uncaught exception, which would end the daemon. Each stream keeps one here.
  if (client instanceof Redis) {
    const guard = (): void => {
      const s: unknown = client.stream
      if (s instanceof EventEmitter && !s.listeners('error').includes(ignoreStreamError)) s.on('error', ignoreStreamError)
    }
    client.on('error', guard)
    client.on('connect', guard)
    client.on('close', guard)
  }
  return client
}

const TLS_FLAGS = { caFile: '--redis-ca-file', certFile: '--redis-cert-file', keyFile: '--redis-key-file' } as const

/**
 * The TLS options for `url` from the PEM files, read now so a wrong path fails at start, naming
 * the flag. Undefined for a redis:// URL without files; files with a redis:// URL are refused
 * (they would be silently unused), as is a certificate without its key.
 */
export function redisTlsOptions (url: string, files: RedisTlsFiles = {}): ConnectionOptions | undefined {
  const given = (Object.keys(TLS_FLAGS) as Array<keyof RedisTlsFiles>).filter((k) => files[k] !== undefined && files[k] !== '')
  if (!parseRedisUrl(url).tls) {
    if (given.length > 0) throw new ConfigError(`${TLS_FLAGS[given[0] as keyof RedisTlsFiles]} needs a TLS store URL (rediss://, rediss+sentinel://, rediss+cluster://), got "${redactUrl(url)}"`)
    return undefined
  }
  if ((files.certFile ?? '') !== '' && (files.keyFile ?? '') === '') throw new ConfigError('--redis-cert-file needs --redis-key-file (the client certificate\'s private key)')
  if ((files.keyFile ?? '') !== '' && (files.certFile ?? '') === '') throw new ConfigError('--redis-key-file needs --redis-cert-file (the client certificate)')
  const out: ConnectionOptions = {}
  for (const k of given) {
    const path = files[k] as string
    let pem: Buffer
    try {
      pem = readFileSync(path)
    } catch (err) {
      throw new ConfigError(`${TLS_FLAGS[k]}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    if (!pem.includes('-----BEGIN ')) throw new ConfigError(`${TLS_FLAGS[k]}: ${path} holds no PEM block (expected -----BEGIN ...)`)
    if (k === 'caFile') out.ca = pem
    else if (k === 'certFile') out.cert = pem
    else out.key = pem
  }
  return out
}

function ignoreStreamError (): void {} // reported through the client's own 'error' already

/** Resolves once the client is ready, false after `timeoutMs` (or when it gave up for good). */
export function waitReady (client: RedisClient, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true)
  if (client.status === 'end') return Promise.resolve(false)
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('end', onEnd)
      resolve(ok)
    }
    const onReady = (): void => { done(true) }
    const onEnd = (): void => { done(false) }
    const timer = setTimeout(() => { done(client.status === 'ready') }, timeoutMs)
    client.on('ready', onReady)
    client.on('end', onEnd)
  })
}

/** Closes without waiting on a dead server (QUIT would hang until the command times out). */
export async function closeClient (client: RedisClient): Promise<void> {
  if (client.status === 'ready') {
    await Promise.race([client.quit().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 500))])
  }
  client.disconnect()
}

/** The deadline of `timeoutMs` passed: the server stopped answering (hung, or packets dropped). */
export function isStoreTimeout (err: unknown): boolean {
  return /^Socket timeout\b|^Command timed out\b/.test(messageOf(err))
}

/** The command never reached a connected server (ioredis words this after its own options). */
export function isNotConnected (err: unknown): boolean {
  return /max retries per request|Stream isn't writeable|enableOfflineQueue|^Connection is closed|^connection closed/i.test(messageOf(err))
}

/** Redis answered, refusing the command for what a key holds (a type svcproxy did not write there). */
export function isWrongType (err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ReplyError' && /\bWRONGTYPE\b/.test(messageOf(err))
}

/** Redis answered with an error about its own state (auth, loading, failover, busy script). */
export function isServerRefusal (err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ReplyError' && /^(NOAUTH|WRONGPASS|LOADING|MASTERDOWN|CLUSTERDOWN|READONLY|BUSY|TRYAGAIN|NOPERM|OOM|MISCONF)\b/.test(messageOf(err))
}

/**
 * What went wrong talking to the store, in words for logs, health and CLI errors. ioredis words
 * its own machinery ("max retries per request limit (which is 0)", "Stream isn't writeable and
 * enableOfflineQueue options is false"); an operator needs what the store did.
 */
export function describeStoreError (err: unknown): string {
  const hint = (err as { svcproxyHint?: unknown } | null)?.svcproxyHint
  if (typeof hint === 'string') return hint
  const msg = messageOf(err)
  const code = (err as { code?: unknown } | null)?.code
  const has = (c: string): boolean => code === c || msg.includes(c)
  const timeout = /^Socket timeout\. .* in (\d+)ms/.exec(msg)
  if (timeout !== null) return `no answer within ${seconds(Number(timeout[1]))} (the server is hung, or the network drops packets)`
  if (/^Command timed out/.test(msg)) return 'no answer in time (the server is hung, or the network drops packets)'
  if (has('ECONNREFUSED')) return 'connection refused (nothing listens there)'
  if (has('ENOTFOUND') || has('EAI_AGAIN')) return 'host name not found'
  if (has('ETIMEDOUT')) return 'connection attempt timed out'
  if (has('EHOSTUNREACH') || has('ENETUNREACH')) return 'host unreachable'
  if (has('ECONNRESET') || has('EPIPE')) return 'connection reset by the server'
  const tls = describeTlsError(msg, code)
  if (tls !== '') return tls
  if (/^NOPERM/.test(msg)) return `the user lacks an ACL permission: ${msg.replace(/^NOPERM\s*/, '')} (grant it with ACL SETUSER)`
  if (/^NOAUTH/.test(msg)) return 'the server requires a password (redis://:PASSWORD@HOST)'
  if (/^WRONGPASS|invalid password|invalid username-password/i.test(msg)) return 'wrong user name or password'
  if (/^LOADING/.test(msg)) return 'the server is still loading its data'
  if (/All sentinels are unreachable/.test(msg)) return 'no sentinel answered'
  if (/Failed to refresh slots cache|None of startup nodes is available|Cluster isn't ready/.test(msg)) return 'no cluster node answered'
  if (isNotConnected(err)) return 'not connected'
  // A server's own error text ("BUSY Redis is busy running a script", "READONLY ...") is kept.
  return msg.replace(/ script: [0-9a-f]{40}, on @user_script:\d+\.?$/, '')
}

/**
 * A TLS 1.3 server that refuses the client's certificate (or wants one) closes the connection
 * after the handshake: the client sees ECONNRESET on its first write. A rediss:// client at a
 * plain port waits for a handshake that never comes. Both get words (read by describeStoreError).
 */
function hintTls (err: Error, hasCert: boolean): void {
  const code = (err as NodeJS.ErrnoException).code
  const tagged = err as Error & { svcproxyHint?: string }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    tagged.svcproxyHint = hasCert
      ? 'TLS: the server reset the connection after the handshake: it refused the client certificate (is it signed by a CA in the server\'s tls-ca-cert-file?)'
      : 'TLS: the server reset the connection after the handshake: it requires a client certificate: give --redis-cert-file and --redis-key-file'
  } else if (code === 'ETIMEDOUT') {
    tagged.svcproxyHint = 'connection attempt timed out: no TLS handshake (if this port is plain Redis, use redis://)'
  }
}

const UNTRUSTED = ['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_UNTRUSTED']

/** A TLS failure in words with what to do; '' when `msg` is not one. */
function describeTlsError (msg: string, code: unknown): string {
  const has = (c: string): boolean => code === c || msg.includes(c) || msg.toLowerCase().includes(c.toLowerCase().replace(/_/g, ' '))
  const untrusted = UNTRUSTED.find(has)
  if (untrusted !== undefined) return `TLS: the server's certificate is not trusted (${untrusted}): give the CA that signed it with --redis-ca-file`
  if (has('CERT_HAS_EXPIRED')) return 'TLS: the server\'s certificate has expired'
  if (has('ERR_TLS_CERT_ALTNAME_INVALID')) return `TLS: the server's certificate does not name the host in the URL (${msg.replace(/^.*?: /, '')})`
  if (/certificate required|alert number 116|peer did not return a certificate/i.test(msg)) return 'TLS: the server requires a client certificate: give --redis-cert-file and --redis-key-file'
  if (/unknown ca|alert number 48|bad certificate|alert number 42/i.test(msg)) return 'TLS: the server refused the client certificate (not signed by a CA it trusts)'
  if (/wrong version number|packet length too long|unexpected eof while reading|EPROTO/i.test(msg)) return 'TLS handshake failed: the server does not speak TLS on this port (use redis:// for a plain port)'
  return ''
}

function messageOf (err: unknown): string {
  if (err instanceof Error) return err.message
  return typeof err === 'string' ? err : String(err)
}

function seconds (ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`
}
