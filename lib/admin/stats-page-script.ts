/**
 * The stats page's script (served inline by stats-page.ts). Plain browser JavaScript, no
 * build step: polls v1/stats once a second (the next poll is scheduled when an answer is in,
 * so polls never pile up), keeps one DOM block per service and, while the block's structure
 * (ports, frontends, endpoints) is unchanged, only rewrites the text of cells whose value
 * changed. Blocks out of sight (scrolled away or filtered out) are neither built nor painted
 * until an IntersectionObserver says they are seen; the CSS skips their layout
 * (content-visibility). With 1,000 services only the few dozen on screen cost anything.
 * Nothing here may contain a backtick or a dollar-brace: it lives in a template literal.
 */
export const STATS_PAGE_SCRIPT: string = String.raw`
(function () {
  'use strict'
  var $ = function (id) { return document.getElementById(id) }
  var list = $('list')
  var filterBox = $('filter')
  var blocks = new Map()
  var order = ''
  var doc = null

  // [colour class, shape, text]: state is told by the word and the shape, colour only adds.
  var PORT = { up: ['ok', '\u25cf', 'UP'], degraded: ['warn', '\u25b2', 'DEGRADED'], 'no-endpoints': ['bad', '\u25a0', 'NO ENDPOINTS'], error: ['bad', '\u25a0', 'LISTENER ERROR'] }
  var FE = { listening: ['ok', '\u25cf', 'LISTENING'], binding: ['warn', '\u25b2', 'BINDING'], error: ['bad', '\u25a0', 'ERROR'], closed: ['off', '\u25cb', 'CLOSED'] }
  var EP = { ready: ['ok', '\u25cf', 'READY'], terminating: ['warn', '\u25b2', 'TERMINATING'], ejected: ['bad', '\u25a0', 'EJECTED'], 'check-down': ['bad', '\u25a0', 'CHECK DOWN'] }
  var RANK = { ok: 0, off: 1, warn: 2, bad: 3 }
  function stateOf (table, s) { return table[s] || ['warn', '\u25c6', String(s).toUpperCase()] }

  var COLS = ['what', 'state', 'active', 'connPerSec', 'accepted', 'bytesUpPerSec', 'bytesDownPerSec', 'bytesUp', 'bytesDown', 'dialFailures', 'rejected', 'detail']
  var HEAD = [
    ['', ''], ['State', ''], ['Active', 'TCP connections open, or UDP sessions'], ['Conn/s', 'connections (UDP: sessions) accepted per second'],
    ['Conns', 'connections accepted since start'], ['In/s', 'bytes client \u2192 endpoint per second'], ['Out/s', 'bytes endpoint \u2192 client per second'],
    ['In', 'bytes client \u2192 endpoint since start'], ['Out', 'bytes endpoint \u2192 client since start'], ['Dial fails', 'dials to endpoints that failed'],
    ['Rejected', 'connections reset or datagrams dropped: limit, no endpoints, source range, UDP drops'], ['Details', ''],
  ]
  var head = document.createElement('thead')
  var headRow = head.insertRow()
  HEAD.forEach(function (h, i) {
    var th = document.createElement('th')
    th.textContent = h[0]
    th.scope = 'col'
    if (h[1] !== '') th.title = h[1]
    if (i >= 2 && i <= 10) th.className = 'n'
    headRow.appendChild(th)
  })

  function num (n) { return n.toLocaleString('en-US') }
  function bytes (n) {
    if (n < 1024) return Math.round(n) + ' B'
    var u = ['KiB', 'MiB', 'GiB', 'TiB']
    var i = -1
    do { n /= 1024; i++ } while (n >= 1024 && i < u.length - 1)
    return (n < 10 ? n.toFixed(1) : Math.round(n)) + ' ' + u[i]
  }
  function rate (n) { return n === 0 ? '0' : n < 10 ? n.toFixed(1) : num(Math.round(n)) }
  function age (ms) {
    if (!(ms >= 0)) return '\u2014'
    var s = Math.floor(ms / 1000)
    if (s < 60) return s + 's ago'
    if (s < 3600) return Math.floor(s / 60) + 'm ago'
    if (s < 86400) return Math.floor(s / 3600) + 'h ago'
    return Math.floor(s / 86400) + 'd ago'
  }
  function hostPort (a, p) { return (a.indexOf(':') >= 0 ? '[' + a + ']' : a) + ':' + p }

  // Writes only what changed: the value last written is kept on the node.
  function set (el, text, cls, title) {
    if (el._t !== text) { el.textContent = text; el._t = text }
    if (cls !== undefined && el._c !== cls) { el.className = cls; el._c = cls }
    if (title !== undefined && el._ti !== title) { el.title = title; el._ti = title }
  }
  function badge (el, st) { set(el, st[1] + ' ' + st[2], 'b ' + st[0]) }

  function makeRow (kind, pi, i) {
    var tr = document.createElement('tr')
    tr.className = kind
    var c = {}
    COLS.forEach(function (k, j) {
      var td = document.createElement('td')
      td.dataset.k = k
      td.className = j >= 2 && j <= 10 ? 'n' : k === 'detail' ? 'dim' : ''
      tr.appendChild(td)
      c[k] = td
    })
    var b = document.createElement('span')
    c.state.appendChild(b)
    return { tr: tr, c: c, b: b, kind: kind, pi: pi, i: i }
  }

  function makeBlock (key) {
    var el = document.createElement('section')
    el.className = 'svc'
    el.dataset.svc = key
    var h = document.createElement('h2')
    var b = document.createElement('span')
    var ns = document.createElement('span')
    ns.className = 'ns'
    var nm = document.createElement('span')
    var meta = document.createElement('span')
    meta.className = 'meta'
    var slash = key.indexOf('/')
    ns.textContent = key.slice(0, slash + 1)
    nm.textContent = key.slice(slash + 1)
    h.append(b, ns, nm, meta)
    var wrap = document.createElement('div')
    wrap.className = 'scroll'
    var table = document.createElement('table')
    table.appendChild(head.cloneNode(true))
    var tbody = table.createTBody()
    wrap.appendChild(table)
    el.append(h, wrap)
    // Not seen until the observer says so: a block's rows are built on its first paint.
    var blk = { key: key, lk: key.toLowerCase(), el: el, badge: b, meta: meta, tbody: tbody, sig: '', rows: [], ports: [], seen: false, dirty: true }
    el._b = blk
    seen.observe(el)
    return blk
  }

  function signature (ports) {
    return ports.map(function (p) {
      return p.id + '|' + p.frontends.map(function (f) { return f.kind + ' ' + f.address + ':' + f.port }).join(',') + '|' + p.endpoints.map(function (e) { return e.endpoint }).join(',')
    }).join(';')
  }

  function build (blk) {
    var rows = []
    var frag = document.createDocumentFragment()
    blk.ports.forEach(function (p, pi) {
      rows.push(makeRow('port', pi, 0))
      p.frontends.forEach(function (_, i) { rows.push(makeRow('fe', pi, i)) })
      p.endpoints.forEach(function (e, i) { var r = makeRow('ep', pi, i); r.tr.dataset.ep = e.endpoint; rows.push(r) })
    })
    rows.forEach(function (r) { frag.appendChild(r.tr) })
    blk.tbody.replaceChildren(frag)
    blk.rows = rows
  }

  function counters (c, x) {
    set(c.active, num(x.active))
    set(c.connPerSec, rate(x.connPerSec))
    set(c.accepted, num(x.accepted))
    set(c.bytesUpPerSec, bytes(x.bytesUpPerSec) + '/s')
    set(c.bytesDownPerSec, bytes(x.bytesDownPerSec) + '/s')
    set(c.bytesUp, bytes(x.bytesUp))
    set(c.bytesDown, bytes(x.bytesDown))
    set(c.dialFailures, num(x.dialFailures), x.dialFailures > 0 ? 'n hot' : 'n')
  }

  function paint (blk) {
    blk.dirty = false
    var sig = signature(blk.ports)
    if (sig !== blk.sig) { blk.sig = sig; build(blk) }
    var worst = ['ok', '\u25cf', 'UP']
    var p0 = blk.ports[0]
    blk.ports.forEach(function (p) { var st = stateOf(PORT, p.state); if (RANK[st[0]] > RANK[worst[0]]) worst = st })
    badge(blk.badge, worst)
    set(blk.meta, p0.type + (p0.clusterIP !== '' && p0.clusterIP !== 'None' ? ' \u00b7 ' + p0.clusterIP : '') + ' \u00b7 ' + blk.ports.length + (blk.ports.length === 1 ? ' port' : ' ports'))
    blk.rows.forEach(function (r) {
      var p = blk.ports[r.pi]
      var c = r.c
      if (r.kind === 'port') {
        badge(r.b, stateOf(PORT, p.state))
        set(c.what, p.port + ' \u00b7 ' + p.protocol)
        counters(c, p)
        var rej = p.rejected + p.noEndpoints + p.sourceRangeDenied + p.udpDrops
        set(c.rejected, num(rej), rej > 0 ? 'n hot' : 'n', 'limit ' + p.rejected + ' \u00b7 no endpoints ' + p.noEndpoints + ' \u00b7 source range ' + p.sourceRangeDenied + ' \u00b7 UDP drops ' + p.udpDrops)
        var changed = p.endpointsChangedAt > 0 ? new Date(p.endpointsChangedAt).toLocaleString() : 'never'
        set(c.detail, 'endpoints changed ' + age(p.endpointsChangedAt > 0 ? doc.time - p.endpointsChangedAt : -1) + ' \u00b7 ' + p.algorithm + (p.sessionAffinity === 'ClientIP' ? ' \u00b7 affinity ClientIP' : ''), undefined, 'endpoint set last changed ' + changed)
      } else if (r.kind === 'fe') {
        var f = p.frontends[r.i]
        badge(r.b, stateOf(FE, f.state))
        var fa = f.kind + ' ' + hostPort(f.address, f.state === 'listening' ? f.boundPort : f.port)
        set(c.what, fa, undefined, fa)
        set(c.detail, f.error, 'hot', f.error)
      } else {
        var e = p.endpoints[r.i]
        badge(r.b, stateOf(EP, e.state))
        set(c.what, '\u2192 ' + e.endpoint, undefined, e.endpoint)
        counters(c, e)
        var where = (e.nodeName !== '' ? 'node ' + e.nodeName : '') + (e.podName !== '' ? (e.nodeName !== '' ? ' \u00b7 ' : '') + 'pod ' + e.podName : '')
        set(c.detail, where, undefined, where)
      }
    })
  }

  var seen = new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      var blk = en.target._b
      blk.seen = en.isIntersecting
      if (blk.seen && blk.dirty) paint(blk)
    })
  }, { rootMargin: '300px 0px' })

  function matches (blk, terms) {
    for (var i = 0; i < terms.length; i++) if (blk.lk.indexOf(terms[i]) < 0) return false
    return true
  }

  function applyFilter () {
    var terms = filterBox.value.trim().toLowerCase().split(/\s+/).filter(Boolean)
    var shown = 0
    blocks.forEach(function (blk) {
      var hide = !matches(blk, terms)
      if (blk.el.hidden !== hide) blk.el.hidden = hide
      if (!hide) shown++
    })
    set($('shown'), terms.length === 0 ? num(blocks.size) + (blocks.size === 1 ? ' service' : ' services') : num(shown) + ' of ' + num(blocks.size) + ' services')
    $('empty').hidden = blocks.size > 0
  }

  function summary (d) {
    var t = d.totals
    set($('s-revision'), num(d.revision))
    set($('s-ports'), num(t.servicePorts))
    set($('s-active'), num(t.active))
    set($('s-conn'), rate(t.connPerSec))
    set($('s-in'), bytes(t.bytesUpPerSec) + '/s')
    set($('s-out'), bytes(t.bytesDownPerSec) + '/s')
    set($('s-fails'), num(t.dialFailures), t.dialFailures > 0 ? 'hot' : '')
    set($('s-rejected'), num(t.rejected), t.rejected > 0 ? 'hot' : '')
    var s = d.source
    badge($('src-state'), !s.synced ? ['warn', '\u25b2', 'NOT SYNCED'] : s.stale ? ['bad', '\u25a0', 'STALE'] : ['ok', '\u25cf', 'SYNCED'])
    set($('src-detail'), s.kind + ' \u00b7 revision ' + num(s.revision) + ' \u00b7 ' + (s.kind === 'file' ? 'loaded ' : s.kind === 'api' ? 'applied ' : 'confirmed ') + age(s.lagMs) + ' \u00b7 ' + num(s.syncErrors) + (s.syncErrors === 1 ? ' sync error' : ' sync errors') + (s.reason !== '' ? ' \u00b7 ' + s.reason : ''),
      s.reason !== '' ? 'hot' : '')
  }

  function render (d) {
    doc = d
    var groups = new Map()
    d.services.forEach(function (p) {
      var key = p.namespace + '/' + p.name
      var g = groups.get(key)
      if (g === undefined) groups.set(key, (g = []))
      g.push(p)
    })
    var added = false
    groups.forEach(function (ports, key) {
      var blk = blocks.get(key)
      if (blk === undefined) { blocks.set(key, (blk = makeBlock(key))); added = true }
      blk.ports = ports
      blk.dirty = true
      if (blk.seen && !blk.el.hidden) paint(blk)
    })
    blocks.forEach(function (blk, key) {
      if (!groups.has(key)) { seen.unobserve(blk.el); blk.el.remove(); blocks.delete(key); added = true }
    })
    var keys = Array.from(groups.keys())
    var next = keys.join('\n')
    if (next !== order) {
      order = next
      keys.forEach(function (k) { list.appendChild(blocks.get(k).el) })
    }
    if (added) applyFilter()
    summary(d)
  }

  var live = $('live')
  function poll () {
    var started = Date.now()
    fetch('v1/stats', { cache: 'no-store' })
      .then(function (res) { if (!res.ok) throw new Error('HTTP ' + res.status); return res.json() })
      .then(function (d) {
        render(d)
        document.body.classList.remove('offline')
        badge(live, ['ok', '\u25cf', 'LIVE'])
        set(live, live._t, undefined, 'updated ' + new Date(d.time).toLocaleTimeString())
      }, function (err) {
        document.body.classList.add('offline')
        badge(live, ['bad', '\u25a0', 'OFFLINE'])
        set(live, live._t, undefined, String(err && err.message || err) + ' \u2014 retrying every second')
      })
      .then(function () { setTimeout(poll, Math.max(0, 1000 - (Date.now() - started))) })
  }

  // The filter survives a reload: it is kept in the address (#q=...).
  var m = /[#&]q=([^&]*)/.exec(location.hash)
  if (m !== null) filterBox.value = decodeURIComponent(m[1])
  filterBox.addEventListener('input', function () {
    applyFilter()
    history.replaceState(null, '', filterBox.value === '' ? location.pathname : '#q=' + encodeURIComponent(filterBox.value))
  })
  poll()
})()
`
