import { ConfigError } from '../errors.js'

const UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/**
 * Parses a Go-style duration as kube-proxy flags take them ("250ms", "30s", "1m30s", "0").
 * Returns milliseconds.
 */
export function parseDuration (text: string, flag = 'duration'): number {
  const s = text.trim()
  if (s === '0') return 0
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y
  let total = 0
  let pos = 0
  while (pos < s.length) {
    re.lastIndex = pos
    const m = re.exec(s)
    if (m === null) break
    total += Number(m[1]) * (UNITS[m[2] ?? ''] ?? 0)
    pos = re.lastIndex
  }
  if (pos !== s.length || s.length === 0) {
    throw new ConfigError(`${flag}: expected a duration such as 250ms, 30s or 1m30s, got "${text}"`)
  }
  return total
}

export function formatDuration (ms: number): string {
  if (ms === 0) return '0s'
  if (ms < 1000) return `${ms}ms`
  if (ms % 60_000 === 0 && ms >= 60_000) return `${ms / 60_000}m`
  return `${ms / 1000}s`
}
