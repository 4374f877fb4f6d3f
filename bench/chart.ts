// The bench's figures as one SVG chart (hand-written, no dependency): proxy CPU per unit of work
// by workload and target, and the latency each proxy adds over direct. The full run writes it to
// docs/performance.svg; to redraw from a saved run:
//   node dist/bench/chart.js [bench/results/latest.json] [docs/performance.svg]
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

interface ChartRow {
  workload: string
  target: string
  status: 'ok' | 'n/a'
  note?: string
  cpuPerUnit: number | null
  cpuUnit: string
  addedP50Us?: number | null
  addedP99Us?: number | null
}

export interface ChartInput {
  date: string
  mode?: string
  machine: Record<string, unknown>
  rows: ChartRow[]
}

const PROXIES = ['naive', 'svcproxy', 'nginx', 'haproxy']
const COLOR: Record<string, string> = { naive: '#a0aec0', svcproxy: '#2b6cb0', nginx: '#2f855a', haproxy: '#c05621' }
const PANEL_W = 440
const BAR_H = 16
const GAP = 6
const LABEL_W = 70
const HEAD = 34

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function num (x: number, unit: string): string {
  const d = x >= 100 ? 0 : x >= 10 ? 1 : 2
  return `${x.toFixed(d)} ${unit}`
}

interface Bar { target: string, value: number | null, extra?: number | null, label: string }

/** One panel: a title and one horizontal bar per proxy, scaled to the panel's largest value. */
function panel (x: number, y: number, title: string, bars: Bar[]): string {
  const max = Math.max(1e-9, ...bars.map((b) => Math.max(b.value ?? 0, b.extra ?? 0)))
  const room = PANEL_W - LABEL_W - 130
  const out = [`<text x="${x}" y="${y + 16}" class="t">${esc(title)}</text>`]
  bars.forEach((b, i) => {
    const by = y + HEAD + i * (BAR_H + GAP)
    out.push(`<text x="${x + LABEL_W - 6}" y="${by + BAR_H - 4}" class="l" text-anchor="end">${b.target}</text>`)
    if (b.value === null) {
      out.push(`<text x="${x + LABEL_W + 4}" y="${by + BAR_H - 4}" class="na">${esc(b.label)}</text>`)
      return
    }
    if (b.extra != null && b.extra > 0) {
      out.push(`<rect x="${x + LABEL_W}" y="${by + 3}" width="${(Math.max(0, b.extra) / max * room).toFixed(1)}" height="${BAR_H - 6}" fill="${COLOR[b.target] ?? '#666'}" opacity="0.35"/>`)
    }
    const w = Math.max(0, b.value) / max * room
    out.push(`<rect x="${x + LABEL_W}" y="${by}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${COLOR[b.target] ?? '#666'}"/>`)
    const lx = x + LABEL_W + Math.max(w, b.extra != null && b.extra > 0 ? Math.max(0, b.extra) / max * room : 0) + 5
    out.push(`<text x="${lx.toFixed(1)}" y="${by + BAR_H - 4}" class="v">${esc(b.label)}</text>`)
  })
  return out.join('\n')
}

function panelHeight (n: number): number {
  return HEAD + n * (BAR_H + GAP) + 14
}

/** The SVG text for one bench run. */
export function chartSvg (j: ChartInput): string {
  const row = (w: string, t: string): ChartRow | undefined => j.rows.find((r) => r.workload === w && r.target === t)
  const present = PROXIES.filter((t) => j.rows.some((r) => r.target === t))
  const cpuBars = (w: string): Bar[] => present.map((t) => {
    const r = row(w, t)
    if (r === undefined || r.status !== 'ok' || r.cpuPerUnit === null) return { target: t, value: null, label: r?.note?.startsWith('not installed') === true ? 'not installed' : 'n/a' }
    return { target: t, value: r.cpuPerUnit, label: num(r.cpuPerUnit, r.cpuUnit) }
  })
  const signed = (x: number): string => `${x < 0 ? '−' : '+'}${Math.abs(x).toFixed(0)} µs`
  const latBars = (w: string, which: 'addedP50Us' | 'addedP99Us'): Bar[] => present.map((t) => {
    const r = row(w, t)
    const v = r?.[which]
    if (r === undefined || r.status !== 'ok' || v == null) return { target: t, value: null, label: 'n/a' }
    return { target: t, value: Math.max(0, v), label: signed(v) }
  })
  const panels: Array<[string, Bar[]]> = [
    ['HTTP keep-alive, 50 connections: proxy CPU per request', cpuBars('http-keepalive')],
    ['One connection per request: proxy CPU per request', cpuBars('http-close')],
    ['Bulk TCP stream: proxy CPU per GB', cpuBars('bulk')],
    ['UDP closed loop: proxy CPU per datagram pair', cpuBars('udp')],
    ['Latency added over direct, p50 (4 keep-alive connections)', latBars('latency', 'addedP50Us')],
    ['Latency added over direct, p99 (4 keep-alive connections)', latBars('latency', 'addedP99Us')],
  ]
  const ph = panelHeight(present.length)
  const cols = 2
  const W = cols * PANEL_W + 30
  const top = 48
  const H = top + Math.ceil(panels.length / cols) * (ph + 10) + 24
  const m = j.machine
  const load = Array.isArray(m.loadavg) ? (m.loadavg as number[]).join(' ') : ''
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">`,
    '<style>.h{font-size:16px;font-weight:bold}.s{font-size:11px;fill:#555}.t{font-size:13px;font-weight:bold}.l{font-size:12px}.v{font-size:11px}.na{font-size:11px;fill:#888;font-style:italic}</style>',
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="15" y="22" class="h">svcproxy against nginx stream, HAProxy and a naive Node proxy: less is better</text>`,
    `<text x="15" y="38" class="s">${esc(`bench/run.ts ${j.mode ?? 'full'} run ${j.date.slice(0, 16).replace('T', ' ')} UTC, ${String(m.cpu ?? '')}, ${String(m.cores ?? '')} cores, node ${String(m.node ?? '')}, loadavg ${load}; CPU = the proxy process's own, medians of the repetitions`)}</text>`,
  ]
  panels.forEach(([title, bars], i) => {
    const x = 15 + (i % cols) * PANEL_W
    const y = top + Math.floor(i / cols) * (ph + 10)
    out.push(panel(x, y, title, bars))
  })
  out.push('</svg>', '')
  return out.join('\n')
}

export function writeChart (j: ChartInput, file: string): void {
  writeFileSync(file, chartSvg(j))
}

function main (): void {
  const here = dirname(fileURLToPath(import.meta.url))
  const root = here.includes(join('dist', 'bench')) ? resolve(here, '../..') : resolve(here, '..')
  const input = resolve(process.argv[2] ?? join(root, 'bench/results/latest.json'))
  const output = resolve(process.argv[3] ?? join(root, 'docs/performance.svg'))
  writeChart(JSON.parse(readFileSync(input, 'utf8')) as ChartInput, output)
  process.stdout.write(`chart: ${output}\n`)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main()
