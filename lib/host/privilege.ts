import { readFileSync } from 'node:fs'

/** Linux capability numbers (linux/capability.h). */
export const CAP_NET_ADMIN = 12

/**
 * True when this process holds `cap` in its effective set (root usually does, and so does a
 * systemd service with AmbientCapabilities). Read from /proc, so it costs no syscall beyond a read.
 */
export function hasCapability (cap: number): boolean {
  let status: string
  try {
    status = readFileSync('/proc/self/status', 'utf8')
  } catch {
    return process.getuid?.() === 0
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)
  if (m === null) return process.getuid?.() === 0
  return (BigInt(`0x${m[1] ?? '0'}`) & (1n << BigInt(cap))) !== 0n
}
