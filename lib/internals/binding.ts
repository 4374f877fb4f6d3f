/**
 * `process.binding(name)`, or null: the one call into Node's internal bindings. Documented as
 * deprecated (DEP0111, documentation-only for the modules svcproxy uses: no warning unless run
 * with --pending-deprecation). Never called when deprecations are made to throw
 * (--throw-deprecation): the warning would then be thrown later, from a tick, and end the
 * process; such a process gets the node engine instead.
 */
export function processBinding (name: string): Record<string, unknown> | null {
  const p = process as unknown as { binding?: (name: string) => unknown, throwDeprecation?: boolean }
  if (typeof p.binding !== 'function' || p.throwDeprecation === true) return null
  try {
    const b = p.binding(name)
    return typeof b === 'object' && b !== null ? b as Record<string, unknown> : null
  } catch {
    return null
  }
}
