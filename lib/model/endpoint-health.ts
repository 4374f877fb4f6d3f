/**
 * Endpoint health settings read from a service's annotations (docs/health.md): outlier
 * ejection (passive, Envoy's model; on by default, defaults from the flags) and active health
 * checks (HAProxy's `check inter rise fall`; only for services that ask). The model refuses a
 * malformed value (healthAnnotationIssues), so the data plane reads only valid ones.
 */
import { parseDuration } from '../util/duration.js'
import {
  HEALTH_CHECK_ANNOTATION, HEALTH_CHECK_FALL_ANNOTATION, HEALTH_CHECK_INTERVAL_ANNOTATION, HEALTH_CHECK_RISE_ANNOTATION,
  HEALTH_CHECK_TIMEOUT_ANNOTATION, OUTLIER_BASE_EJECTION_ANNOTATION, OUTLIER_FAILURES_ANNOTATION, OUTLIER_MAX_EJECTION_ANNOTATION,
  OUTLIER_MAX_PERCENT_ANNOTATION,
} from './annotations.js'

export interface OutlierSettings {
  /** Dial failures in a row that eject an endpoint; 0: outlier ejection off. */
  consecutiveFailures: number
  /** Ejection time = base × times ejected (decays while healthy), at most maxEjectionMs. */
  baseEjectionMs: number
  maxEjectionMs: number
  /** Most of a port's endpoints ejected at once, in percent; at least one may be, never all. */
  maxEjectionPercent: number
}

export interface HealthCheckSettings {
  kind: 'tcp' | 'http'
  /** http: the path of the GET (2xx/3xx passes). */
  path: string
  intervalMs: number
  timeoutMs: number
  /** Passes in a row that bring a down endpoint up, failures in a row that take an up one down. */
  rise: number
  fall: number
}

/** Active checks' timing when the service names none (HAProxy's inter 2s, rise 2, fall 3). */
export const HEALTH_CHECK_DEFAULTS = { intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 } as const
export const MAX_CONSECUTIVE_FAILURES = 1000
export const MAX_EJECTION_MS = 24 * 3_600_000

type Check = (v: string) => boolean

function durationIn (min: number, max: number): Check {
  return (v) => {
    const ms = durationMs(v)
    return ms !== undefined && ms >= min && ms <= max
  }
}

function intIn (min: number, max: number): Check {
  return (v) => /^\d{1,7}$/.test(v) && Number(v) >= min && Number(v) <= max
}

const HTTP_PATH = /^\/[\x21-\x7e]{0,1023}$/

/** Each annotation: what it accepts, and how to say so. */
const RULES: Array<[string, Check, string]> = [
  [OUTLIER_FAILURES_ANNOTATION, (v) => v === 'off' || intIn(0, MAX_CONSECUTIVE_FAILURES)(v), `an integer 1-${MAX_CONSECUTIVE_FAILURES}, or "off" (or 0)`],
  [OUTLIER_BASE_EJECTION_ANNOTATION, durationIn(1, MAX_EJECTION_MS), 'a duration from 1ms to 24h, such as 30s'],
  [OUTLIER_MAX_EJECTION_ANNOTATION, durationIn(1, MAX_EJECTION_MS), 'a duration from 1ms to 24h, such as 5m'],
  [OUTLIER_MAX_PERCENT_ANNOTATION, intIn(0, 100), 'an integer 0-100 (percent of the port\'s endpoints)'],
  [HEALTH_CHECK_ANNOTATION, (v) => v === 'tcp' || v === 'http' || (v.startsWith('http:') && HTTP_PATH.test(v.slice(5))), '"tcp", "http" or "http:/path"'],
  [HEALTH_CHECK_INTERVAL_ANNOTATION, durationIn(10, 3_600_000), 'a duration from 10ms to 1h, such as 2s'],
  [HEALTH_CHECK_TIMEOUT_ANNOTATION, durationIn(1, 3_600_000), 'a duration from 1ms to 1h, such as 1s'],
  [HEALTH_CHECK_RISE_ANNOTATION, intIn(1, 100), 'an integer 1-100'],
  [HEALTH_CHECK_FALL_ANNOTATION, intIn(1, 100), 'an integer 1-100'],
]

/** The malformed endpoint-health annotations: [annotation, what was expected] each. */
export function healthAnnotationIssues (a: Record<string, string>): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const [name, ok, expected] of RULES) {
    const v = a[name]
    if (v !== undefined && !ok(v)) out.push([name, expected])
  }
  return out
}

function durationMs (v: string): number | undefined {
  try {
    return parseDuration(v)
  } catch {
    return undefined
  }
}

/** The valid value of an annotation, else undefined (absent or malformed: the default applies). */
function valid (a: Record<string, string>, name: string): string | undefined {
  const v = a[name]
  if (v === undefined) return undefined
  const rule = RULES.find((r) => r[0] === name)
  return rule === undefined || rule[1](v) ? v : undefined
}

/** A service's outlier settings: its annotations over the proxy's defaults (the flags). */
export function outlierSettingsOf (a: Record<string, string>, d: OutlierSettings): OutlierSettings {
  const failures = valid(a, OUTLIER_FAILURES_ANNOTATION)
  const base = valid(a, OUTLIER_BASE_EJECTION_ANNOTATION)
  const max = valid(a, OUTLIER_MAX_EJECTION_ANNOTATION)
  const pct = valid(a, OUTLIER_MAX_PERCENT_ANNOTATION)
  const baseEjectionMs = base === undefined ? d.baseEjectionMs : (durationMs(base) ?? d.baseEjectionMs)
  return {
    consecutiveFailures: failures === undefined ? d.consecutiveFailures : failures === 'off' ? 0 : Number(failures),
    baseEjectionMs,
    maxEjectionMs: Math.max(baseEjectionMs, max === undefined ? d.maxEjectionMs : (durationMs(max) ?? d.maxEjectionMs)),
    maxEjectionPercent: pct === undefined ? d.maxEjectionPercent : Number(pct),
  }
}

/** A service's active health check, or null when it asks for none. */
export function healthCheckOf (a: Record<string, string>): HealthCheckSettings | null {
  const spec = valid(a, HEALTH_CHECK_ANNOTATION)
  if (spec === undefined) return null
  const interval = valid(a, HEALTH_CHECK_INTERVAL_ANNOTATION)
  const timeout = valid(a, HEALTH_CHECK_TIMEOUT_ANNOTATION)
  const rise = valid(a, HEALTH_CHECK_RISE_ANNOTATION)
  const fall = valid(a, HEALTH_CHECK_FALL_ANNOTATION)
  return {
    kind: spec === 'tcp' ? 'tcp' : 'http',
    path: spec.startsWith('http:') ? spec.slice(5) : '/',
    intervalMs: interval === undefined ? HEALTH_CHECK_DEFAULTS.intervalMs : (durationMs(interval) ?? HEALTH_CHECK_DEFAULTS.intervalMs),
    timeoutMs: timeout === undefined ? HEALTH_CHECK_DEFAULTS.timeoutMs : (durationMs(timeout) ?? HEALTH_CHECK_DEFAULTS.timeoutMs),
    rise: rise === undefined ? HEALTH_CHECK_DEFAULTS.rise : Number(rise),
    fall: fall === undefined ? HEALTH_CHECK_DEFAULTS.fall : Number(fall),
  }
}

export function sameHealthCheck (a: HealthCheckSettings | null, b: HealthCheckSettings | null): boolean {
  if (a === null || b === null) return a === b
  return a.kind === b.kind && a.path === b.path && a.intervalMs === b.intervalMs && a.timeoutMs === b.timeoutMs && a.rise === b.rise && a.fall === b.fall
}
