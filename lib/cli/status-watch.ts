import type { StatsDoc, StatsServicePort } from '../admin/stats.js'
import type { FrontendStatus } from '../api/service-proxy.js'

/**
 * `svcproxy status --watch`: the stats page's view in a terminal, redrawn in place once a second
 * with plain ANSI (cursor home, clear to end of line / of screen), until SIGINT or SIGTERM.
 * It reads /v1/stats, so the rates are the daemon's own (see docs/operations.md).
 */

/** What the view is written to: process.stdout, or a test's sink. */
export interface Terminal {
  write: (text: string) => unknown
  isTTY?: boolean
  columns?: number
  rows?: number
}

const ESC = '\x1b['
const HOME = `${ESC}H`
const CLEAR_LINE = `${ESC}K`
const CLEAR_BELOW = `${ESC}J`
const SGR: Record<string, string> = { ok: '32', warn: '33', bad: '31', off: '2' }

/** Words first: the state reads the same without colour (NO_COLOR, a pipe). */
const STATE_CLASS: Record<string, string> = {
  up: 'ok', ready: 'ok', listening: 'ok', SYNCED: 'ok',
  degraded: 'warn', terminating: 'warn', binding: 'warn', 'NOT-SYNCED': 'warn',
  'no-endpoints': 'bad', error: 'bad', STALE: 'bad', ejected: 'bad', 'check-down': 'bad',
  closed: 'off',
}

export interface WatchOptions {
  /** Where the daemon is, for the title line. */
  base: string
  /** Why the last poll failed ('' when it did not): the last good answer stays on screen. */
  error: string
  color: boolean
}

/** One frame, as lines (no escape codes but colours). */
export function renderWatch (doc: StatsDoc, o: WatchOptions): string[] {
  const paint = (text: string, cls: string | undefined): string => (o.color && cls !== undefined ? `${ESC}${SGR[cls] ?? '0'}m${text}${ESC}0m` : text)
  const t = doc.totals
  const s = doc.source
  const lines = [
    `svcproxy status --watch   ${o.base}   ${new Date(doc.time).toISOString().slice(11, 19)}Z   (Ctrl-C to quit)`,
    `revision ${doc.revision} · ${plural(t.servicePorts, 'service port')} · ${t.active} active · ${rate(t.connPerSec)} conn/s · in ${bytes(t.bytesUpPerSec)}/s · out ${bytes(t.bytesDownPerSec)}/s · ${t.dialFailures} dial fails · ${t.rejected} rejected`,
  ]
  const srcState = !s.synced ? 'NOT-SYNCED' : s.stale ? 'STALE' : 'SYNCED'
  lines.push(`source ${s.kind} ${paint(srcState, STATE_CLASS[srcState])} · revision ${s.revision} · ${s.kind === 'file' ? 'loaded' : s.kind === 'api' ? 'applied' : 'confirmed'} ${age(s.lagMs)} · ${plural(s.syncErrors, 'sync error')}${s.reason === '' ? '' : ` · ${s.reason}`}`)
  if (o.error !== '') lines.push(paint(`${o.error}; showing the last answer, retrying every second`, 'bad'))
  lines.push('')
  const sps = doc.services
  if (sps.length === 0) return [...lines, 'No service ports.']
  lines.push(...grid(
    ['NAMESPACE', 'NAME', 'PORT', 'PROTOCOL', 'STATE', 'ADDRESSES', 'ACTIVE', 'CONN/S', 'IN/S', 'OUT/S', 'DIAL-FAILS', 'REJECTED', 'ENDPOINTS', 'CHANGED'],
    sps.map((p) => [p.namespace, p.name, p.port, p.protocol, p.state, addresses(p.frontends), String(p.active), rate(p.connPerSec), `${bytes(p.bytesUpPerSec)}/s`, `${bytes(p.bytesDownPerSec)}/s`,
      String(p.dialFailures), String(rejected(p)), endpointsCell(p), age(p.endpointsChangedAt > 0 ? doc.time - p.endpointsChangedAt : -1)]),
    4, paint,
  ))
  const eps = sps.flatMap((p) => p.endpoints.map((e) => [`${p.namespace}/${p.name}`, p.port, e.endpoint, e.state, String(e.active), rate(e.connPerSec), `${bytes(e.bytesUpPerSec)}/s`, `${bytes(e.bytesDownPerSec)}/s`,
    String(e.dialFailures), e.nodeName === '' ? '<none>' : e.nodeName]))
  if (eps.length > 0) {
    lines.push('')
    lines.push(...grid(['SERVICE', 'PORT', 'ENDPOINT', 'STATE', 'ACTIVE', 'CONN/S', 'IN/S', 'OUT/S', 'DIAL-FAILS', 'NODE'], eps, 3, paint))
  }
  return lines
}

/** Lines as one in-place redraw: home, each line cleared to its end, the rest of the screen cleared. */
export function frame (lines: string[], term: Terminal): string {
  let shown = lines
  const rows = term.isTTY === true ? term.rows ?? 0 : 0
  if (rows > 1 && lines.length > rows - 1) shown = [...lines.slice(0, rows - 2), `… ${lines.length - rows + 2} more lines (a taller terminal shows them)`]
  const cols = term.isTTY === true ? term.columns ?? 0 : 0
  return `${HOME}${shown.map((l) => (cols > 0 ? clip(l, cols) : l) + CLEAR_LINE).join('\n')}${CLEAR_BELOW}`
}

/**
 * Draws a frame once a second until SIGINT/SIGTERM, then shows the cursor again and resolves 0.
 * A failed poll keeps the last frame with the reason; `fetchDoc` rejecting on the first call is
 * the caller's to report (status exits 1 as without --watch).
 */
export async function watchStatus (base: string, fetchDoc: () => Promise<StatsDoc>, term: Terminal, intervalMs = 1000): Promise<number> {
  let doc = await fetchDoc()
  let error = ''
  let stop: () => void = () => {}
  const stopped = new Promise<void>((resolve) => { stop = resolve })
  let done = false
  const onSignal = (): void => { done = true; stop() }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  term.write(`${ESC}?25l${ESC}2J`) // cursor hidden while drawing; the screen cleared once
  try {
    while (!done) {
      const started = Date.now()
      term.write(frame(renderWatch(doc, { base, error, color: term.isTTY === true && process.env.NO_COLOR === undefined }), term))
      let timer: NodeJS.Timeout | undefined
      await Promise.race([stopped, new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, intervalMs - (Date.now() - started))) })])
      clearTimeout(timer)
      if (done) break
      try {
        const next = await Promise.race([fetchDoc(), stopped])
        if (next !== undefined) doc = next
        error = ''
      } catch (err) {
        error = (err as Error).message
      }
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    term.write(`${ESC}?25h\n`)
  }
  return 0
}

function rejected (p: StatsServicePort): number {
  return p.rejected + p.noEndpoints + p.sourceRangeDenied + p.udpDrops
}

function endpointsCell (p: StatsServicePort): string {
  const ready = p.endpoints.filter((e) => e.ready).length
  return p.endpoints.length === 0 ? '<none>' : `${ready}/${p.endpoints.length}`
}

function addresses (fes: FrontendStatus[]): string {
  if (fes.length === 0) return '<none>'
  return fes.map((f) => {
    const host = f.address.includes(':') ? `[${f.address}]` : f.address
    return f.state === 'listening' ? `${host}:${f.boundPort}` : `${host}:${f.port}(${f.state})`
  }).join(',')
}

function plural (n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function bytes (n: number): string {
  if (n < 1024) return `${Math.round(n)} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let i = -1
  do { n /= 1024; i++ } while (n >= 1024 && i < units.length - 1)
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${units[i] ?? ''}`
}

function rate (n: number): string {
  return n === 0 ? '0' : n < 10 ? n.toFixed(1) : String(Math.round(n))
}

function age (ms: number): string {
  if (!(ms >= 0)) return '-'
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}

/** status's kubectl layout (columns three spaces apart), with column `stateCol` coloured after padding. */
function grid (head: string[], rows: string[][], stateCol: number, paint: (text: string, cls: string | undefined) => string): string[] {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (r: string[], body: boolean): string => r.map((c, i) => {
    const cell = i === r.length - 1 ? c : c.padEnd((w[i] ?? 0) + 3)
    return body && i === stateCol ? paint(c, STATE_CLASS[c]) + cell.slice(c.length) : cell
  }).join('')
  return [line(head, false), ...rows.map((r) => line(r, true))]
}

/** Cuts a line to `width` visible characters; colour codes do not count. */
function clip (line: string, width: number): string {
  let seen = 0
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i)
      if (end > 0) { i = end; continue }
    }
    if (++seen > width) return `${line.slice(0, i)}${ESC}0m`
  }
  return line
}
