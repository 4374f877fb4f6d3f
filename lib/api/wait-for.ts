// Awaitable events for tests and harnesses: proxy.waitFor(name, predicate, { timeout }) and
// `for await (const e of proxy.events({ service }))`. Both subscribe with ordinary listeners, so
// a proxy nobody waits on still builds no event object (frontend/events.ts `observed`), and both
// remove their listeners when they end: resolved, timed out, aborted, broken out of, or the proxy
// closed. docs/testing.md shows them in use.
import type { EventEmitter } from 'node:events'
import { DEFAULTS } from '../defaults.js'
import { ClosedError, ConfigError, EventOverflowError, WaitTimeoutError } from '../errors.js'
import type { ProxyEventMap } from '../frontend/events.js'
import type { Table } from '../table/table.js'

export type ProxyEventName = keyof ProxyEventMap
export type ProxyEventOf<K extends ProxyEventName> = ProxyEventMap[K][0]
/** One item of proxy.events(): the event's own fields plus `type`, its name (narrows the union). */
export type ProxyEvent = { [K in ProxyEventName]: { type: K } & ProxyEventOf<K> }[ProxyEventName]

/** Every event a proxy emits (ProxyEventMap's keys), for checking names at run time. */
export const EVENT_NAMES: readonly ProxyEventName[] = ['accept', 'endpoint', 'dialFailed', 'close', 'endpoints', 'sessionOpen', 'sessionClose', 'fault', 'endpointHealth'] satisfies ProxyEventName[]

export interface WaitForOptions {
  /** ms; default DEFAULTS.waitForTimeoutMs (10 s). */
  timeout?: number
  /** Aborting rejects the wait with the signal's reason. */
  signal?: AbortSignal
  /** What the predicate means, for the timeout's message (else the predicate's source). */
  label?: string
}

export interface EventsOptions {
  /** `namespace/name` (or `name` in `default`): only this service's events. */
  service?: string
  /** A port name or number: only this port's events (a number also matches the port's name). */
  port?: string | number
  /** Only these events (default: every one). */
  types?: ProxyEventName[]
  /** Events held for a slow reader; beyond, the iterator fails with EventOverflowError. Default DEFAULTS.eventsBufferSize. */
  bufferSize?: number
  /** Aborting ends the iteration (as `break` does). */
  signal?: AbortSignal
}

type Listener = (e: unknown) => void

/** A proxy's waiters and iterators: ended when it closes. One per proxy, made on first use. */
export class EventWaiters {
  private readonly ee: EventEmitter
  private readonly table: Table
  private readonly live = new Set<() => void>()
  private closed = false

  constructor (ee: EventEmitter, table: Table) {
    this.ee = ee
    this.table = table
  }

  waitFor<K extends ProxyEventName> (name: K, predicate?: ((e: ProxyEventOf<K>) => boolean) | null, opts: WaitForOptions = {}): Promise<ProxyEventOf<K>> {
    try { checkName(name, 'waitFor') } catch (err) { return Promise.reject(err) }
    if (predicate !== undefined && predicate !== null && typeof predicate !== 'function') return Promise.reject(new ConfigError(`waitFor('${name}'): the predicate must be a function (e) => boolean, got ${typeof predicate}`))
    const timeout = opts.timeout ?? DEFAULTS.waitForTimeoutMs
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) return Promise.reject(new ConfigError(`waitFor('${name}'): timeout: expected a duration in ms >= 0, got ${String(timeout)}`))
    if (this.closed) return Promise.reject(new ClosedError())
    const what = describePredicate(predicate, opts.label)
    return new Promise<ProxyEventOf<K>>((resolve, reject) => {
      let seen = 0
      let last: unknown
      const done = (): void => {
        this.ee.off(name, onEvent)
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        this.live.delete(onClose)
      }
      const onEvent: Listener = (e) => {
        let ok = true
        if (typeof predicate === 'function') {
          try {
            ok = predicate(e as ProxyEventOf<K>)
          } catch (err) {
            done()
            reject(err)
            return
          }
        }
        if (ok) { done(); resolve(e as ProxyEventOf<K>); return }
        seen++
        last = e
      }
      const onAbort = (): void => { done(); reject(opts.signal?.reason) }
      const onClose = (): void => { done(); reject(new ClosedError(`proxy closed while waiting for '${name}'${what === '' ? '' : ` matching ${what}`}`)) }
      const timer = setTimeout(() => {
        done()
        const head = `waitFor('${name}') timed out after ${timeout} ms: ${what === '' ? `no '${name}' event` : `no '${name}' event matched ${what}`}`
        const tail = seen === 0 ? `; no '${name}' event at all` : `; ${seen} '${name}' event${seen === 1 ? '' : 's'} did not match, the last: ${brief(last)}`
        reject(new WaitTimeoutError(name, what, timeout, seen, last, head + tail))
      }, timeout)
      if (opts.signal?.aborted === true) { clearTimeout(timer); reject(opts.signal.reason); return }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      this.ee.on(name, onEvent)
      this.live.add(onClose)
    })
  }

  events (opts: EventsOptions = {}): AsyncIterableIterator<ProxyEvent> {
    const types = opts.types ?? EVENT_NAMES
    for (const n of types) checkName(n, 'events')
    const bufferSize = opts.bufferSize ?? DEFAULTS.eventsBufferSize
    if (!Number.isInteger(bufferSize) || bufferSize < 1) throw new ConfigError(`events(): bufferSize: expected an integer >= 1, got ${String(bufferSize)}`)
    const service = opts.service === undefined ? null : opts.service.includes('/') ? opts.service : `default/${opts.service}`
    const port = opts.port === undefined ? null : String(opts.port)
    const portNumber = typeof opts.port === 'number' ? opts.port : null
    const buffer: ProxyEvent[] = []
    let waiting: ((r: IteratorResult<ProxyEvent>) => void) | null = null
    let failWaiting: ((err: unknown) => void) | null = null
    let ended = false
    let failure: unknown = null
    const listeners = new Map<ProxyEventName, Listener>()
    const matches = (e: { service?: string, port?: string }): boolean => {
      if (service !== null && e.service !== service) return false
      if (port === null || e.port === port) return true
      // A port asked for by number matches its name too (events carry the name when it has one).
      return portNumber !== null && this.table.statesOf(e.service ?? '').some((s) => s.port.port === portNumber && s.port.name === e.port)
    }
    const detach = (): void => {
      for (const [n, l] of listeners) this.ee.off(n, l)
      listeners.clear()
      opts.signal?.removeEventListener('abort', end)
      this.live.delete(end)
    }
    /** No more events: what is buffered is still delivered, then done. */
    function end (): void {
      if (ended) return
      ended = true
      detach()
      if (waiting !== null && buffer.length === 0) { const w = waiting; waiting = null; failWaiting = null; w({ value: undefined, done: true }) }
    }
    const fail = (err: unknown): void => {
      ended = true
      failure = err
      buffer.length = 0
      detach()
      if (failWaiting !== null) { const f = failWaiting; waiting = null; failWaiting = null; f(err) }
    }
    for (const n of types) {
      const l: Listener = (e) => {
        if (ended || !matches(e as { service?: string, port?: string })) return
        const item = { type: n, ...(e as object) } as ProxyEvent
        if (waiting !== null) { const w = waiting; waiting = null; failWaiting = null; w({ value: item, done: false }); return }
        if (buffer.length >= bufferSize) {
          fail(new EventOverflowError(bufferSize, `events(): the reader fell ${bufferSize} events behind (bufferSize ${bufferSize}); the iterator is closed. Read faster, narrow it with { service, port, types }, or raise bufferSize`))
          return
        }
        buffer.push(item)
      }
      listeners.set(n, l)
      this.ee.on(n, l)
    }
    this.live.add(end)
    if (opts.signal?.aborted === true) end()
    else opts.signal?.addEventListener('abort', end, { once: true })
    if (this.closed) end()
    const it: AsyncIterableIterator<ProxyEvent> = {
      next: () => {
        const head = buffer.shift()
        if (head !== undefined) return Promise.resolve({ value: head, done: false })
        if (failure !== null) { const f = failure; failure = null; return Promise.reject(f) }
        if (ended) return Promise.resolve({ value: undefined, done: true })
        return new Promise((resolve, reject) => { waiting = resolve; failWaiting = reject })
      },
      return: () => {
        ended = true
        buffer.length = 0
        detach()
        if (waiting !== null) { const w = waiting; waiting = null; failWaiting = null; w({ value: undefined, done: true }) }
        return Promise.resolve({ value: undefined, done: true })
      },
      [Symbol.asyncIterator]: () => it,
    }
    return it
  }

  /** The proxy closed (after its last connection's events): waits reject, iterators end. */
  close (): void {
    this.closed = true
    for (const end of [...this.live]) end()
  }
}

function checkName (name: unknown, where: string): void {
  if (!(EVENT_NAMES as readonly unknown[]).includes(name)) throw new ConfigError(`${where}(): unknown event ${JSON.stringify(name)} (events: ${EVENT_NAMES.join(', ')})`)
}

/** The predicate in words: its label, else its source on one line (shortened). */
function describePredicate (p: unknown, label: string | undefined): string {
  if (label !== undefined && label !== '') return label
  if (typeof p !== 'function') return ''
  const src = Function.prototype.toString.call(p).replace(/\s+/g, ' ').trim()
  return src.length > 160 ? `${src.slice(0, 157)}...` : src
}

function brief (e: unknown): string {
  let s: string
  try {
    s = JSON.stringify(e) ?? String(e)
  } catch {
    s = String(e)
  }
  return s.length > 240 ? `${s.slice(0, 237)}...` : s
}
