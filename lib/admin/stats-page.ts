import { createHash } from 'node:crypto'
import { STATS_PAGE_SCRIPT } from './stats-page-script.js'

/**
 * GET / on the metrics address: one self-contained page (inline CSS and script, no request but
 * its own v1/stats, so it works offline and behind a path prefix). Built once at module load;
 * the Content-Security-Policy allows exactly this style and this script, by hash, and no other
 * origin, so nothing external can ever load into it.
 */

const STYLE = `
:root { color-scheme: light dark;
  --bg: #f5f6f8; --fg: #1b1f24; --dim: #5d6673; --card: #fff; --line: #dfe3e8; --row: #f0f2f5;
  --ok: #116329; --ok-bg: #d5f5dd; --warn: #7d4e00; --warn-bg: #fdf0c4; --bad: #b3141f; --bad-bg: #ffe3e0; --off: #4f5965; --off-bg: #e6e9ed; }
@media (prefers-color-scheme: dark) { :root {
  --bg: #0e1116; --fg: #e4e9ef; --dim: #8d96a1; --card: #161b22; --line: #2d333b; --row: #1c222a;
  --ok: #4ac26b; --ok-bg: #12301d; --warn: #e0a82e; --warn-bg: #33280f; --bad: #ff6b61; --bad-bg: #3b1619; --off: #9aa4ae; --off-bg: #252b33; } }
* { box-sizing: border-box }
body { margin: 0; font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg) }
header { position: sticky; top: 0; z-index: 1; background: var(--card); border-bottom: 1px solid var(--line); padding: 8px 16px;
  display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: center }
h1 { font-size: 16px; margin: 0; letter-spacing: .01em }
.sum, .src { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: center }
.sum span { white-space: nowrap; color: var(--dim) }
.sum b { color: var(--fg); font-variant-numeric: tabular-nums }
.sum b.hot { color: var(--bad) }
.tools { margin-left: auto; display: flex; gap: 10px; align-items: center }
#shown { color: var(--dim); white-space: nowrap }
input[type=search] { font: inherit; padding: 4px 8px; width: 260px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg) }
main { padding: 12px 16px }
.svc { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin: 0 0 12px; overflow: hidden;
  content-visibility: auto; contain-intrinsic-size: auto 180px }
.svc h2 { font-size: 14px; margin: 0; padding: 7px 12px; border-bottom: 1px solid var(--line); display: flex; gap: 6px; align-items: center }
.svc h2 .b { margin-right: 4px }
.ns, .meta { color: var(--dim); font-weight: normal }
.meta { margin-left: auto; font-size: 12px }
.scroll { overflow-x: auto }
table { border-collapse: collapse; width: 100%; min-width: 1300px; table-layout: fixed; font-variant-numeric: tabular-nums }
th, td { padding: 3px 10px; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--line); overflow: hidden; text-overflow: ellipsis }
th:first-child { width: 240px }
th:nth-child(2) { width: 124px }
th.n { width: 96px }
th { font-weight: 600; color: var(--dim); font-size: 11px; text-transform: uppercase; letter-spacing: .03em }
th.n, td.n { text-align: right }
tbody tr:last-child td { border-bottom: 0 }
tr.port td { background: var(--row); font-weight: 600 }
td[data-k=what] { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px }
tr.fe td[data-k=what], tr.ep td[data-k=what] { padding-left: 26px }
tr.fe td[data-k=what] { color: var(--dim) }
td.dim, tr.port td.dim { color: var(--dim); font-weight: normal }
td.hot, .src .hot { color: var(--bad); font-weight: 600 }
.b { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 11px; font-weight: 600; letter-spacing: .02em; white-space: nowrap }
.b.ok { color: var(--ok); background: var(--ok-bg) }
.b.warn { color: var(--warn); background: var(--warn-bg) }
.b.bad { color: var(--bad); background: var(--bad-bg) }
.b.off { color: var(--off); background: var(--off-bg) }
body.offline main { opacity: .55 }
#empty { color: var(--dim); padding: 24px 16px }
`

const BODY = `
<header>
  <h1>svcproxy</h1>
  <div class="sum">
    <span>revision <b id="s-revision">\u2014</b></span>
    <span>service ports <b id="s-ports">\u2014</b></span>
    <span>active <b id="s-active">\u2014</b></span>
    <span>conn/s <b id="s-conn">\u2014</b></span>
    <span>in <b id="s-in">\u2014</b></span>
    <span>out <b id="s-out">\u2014</b></span>
    <span>dial fails <b id="s-fails">\u2014</b></span>
    <span>rejected <b id="s-rejected">\u2014</b></span>
  </div>
  <div class="src" title="the sync source: where the served table comes from">
    <span>source</span> <span id="src-state" class="b off">\u25cb UNKNOWN</span> <span id="src-detail"></span>
  </div>
  <div class="tools">
    <input id="filter" type="search" placeholder="Filter by namespace or name" aria-label="Filter by namespace or name" autocomplete="off" spellcheck="false">
    <span id="shown"></span>
    <span id="live" class="b off">\u25cb CONNECTING</span>
  </div>
</header>
<main id="list"></main>
<p id="empty" hidden>No service ports.</p>
<noscript><p>This page needs JavaScript. The same data is at <a href="v1/stats">v1/stats</a> (JSON).</p></noscript>
`

function sha256 (text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`
}

/** The page, as sent. */
export const STATS_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>svcproxy stats</title>
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${STATS_PAGE_SCRIPT}</script>
</body>
</html>
`

/** Only this page's own style and script; requests only to its own origin (v1/stats). */
export const STATS_PAGE_CSP: string = [
  "default-src 'none'",
  `style-src ${sha256(STYLE)}`,
  `script-src ${sha256(STATS_PAGE_SCRIPT)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')
