// JSON.parse on Node 20 often names no position ("Unexpected token '}', ... is
// not valid JSON"), so after it fails this strict scanner finds where and why.
// It is iterative so that deeply nested input cannot overflow the stack.

export interface JsonSyntaxProblem {
  /** Offset in UTF-16 code units, as JSON.parse counts. */
  offset: number
  line: number
  column: number
  reason: string
}

const WS = new Set([' ', '\t', '\n', '\r'])
const ESCAPES = new Set(['"', '\\', '/', 'b', 'f', 'n', 'r', 't'])
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y

function show (c: string | undefined): string {
  if (c === undefined) return 'the end of the input'
  return JSON.stringify(c)
}

/** The first syntax error in `text`, or null if it is valid JSON. */
export function findJsonSyntaxError (text: string): JsonSyntaxProblem | null {
  let i = 0
  const stack: Array<'{' | '['> = []
  type Mode = 'value' | 'key' | 'after'
  let mode: Mode = 'value'

  const fail = (reason: string): JsonSyntaxProblem => {
    let line = 1
    let lineStart = 0
    for (let k = text.indexOf('\n'); k !== -1 && k < i; k = text.indexOf('\n', k + 1)) {
      line++
      lineStart = k + 1
    }
    return { offset: i, line, column: i - lineStart + 1, reason }
  }
  const skipWs = (): void => {
    while (i < text.length && WS.has(text[i] ?? '')) i++
  }
  // Returns a reason on failure, leaving `i` at the offending character.
  const scanString = (): string | null => {
    i++
    for (;;) {
      const c = text[i]
      if (c === undefined) return 'expected a closing \'"\', got the end of the input'
      if (c === '"') { i++; return null }
      if (c < ' ') return `expected a string character, got control character U+${c.charCodeAt(0).toString(16).padStart(4, '0')} (escape it)`
      if (c === '\\') {
        const e = text[i + 1]
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) { i += 2; return 'expected 4 hex digits after \\u' }
          i += 6
        } else if (e !== undefined && ESCAPES.has(e)) {
          i += 2
        } else {
          i++
          return `expected an escape (\\", \\\\, \\/, \\b, \\f, \\n, \\r, \\t, \\uXXXX), got ${show(e)}`
        }
      } else {
        i++
      }
    }
  }

  for (;;) {
    skipWs()
    const c = text[i]
    if (mode === 'value') {
      if (c === '{' || c === '[') {
        i++
        skipWs()
        if (text[i] === (c === '{' ? '}' : ']')) { i++; mode = 'after' } else { stack.push(c); mode = c === '{' ? 'key' : 'value' }
        continue
      }
      if (c === '"') {
        const r = scanString()
        if (r !== null) return fail(r)
        mode = 'after'
        continue
      }
      if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
        NUMBER.lastIndex = i
        const m = NUMBER.exec(text)
        if (m === null) { i++; return fail('expected a digit after \'-\'') }
        i += m[0].length
        mode = 'after'
        continue
      }
      const lit = ['true', 'false', 'null'].find((w) => text.startsWith(w, i))
      if (lit !== undefined) { i += lit.length; mode = 'after'; continue }
      return fail(`expected a value (object, array, string, number, true, false or null), got ${show(c)}`)
    }
    if (mode === 'key') {
      if (c !== '"') return fail(`expected a property name in double quotes, got ${show(c)}`)
      const r = scanString()
      if (r !== null) return fail(r)
      skipWs()
      if (text[i] !== ':') return fail(`expected ':' after a property name, got ${show(text[i])}`)
      i++
      mode = 'value'
      continue
    }
    const top = stack[stack.length - 1]
    if (top === undefined) {
      if (c === undefined) return null
      return fail(`expected the end of the input after the JSON value, got ${show(c)}`)
    }
    const close = top === '{' ? '}' : ']'
    if (c === ',') { i++; mode = top === '{' ? 'key' : 'value'; continue }
    if (c === close) { i++; stack.pop(); continue }
    return fail(`expected ',' or '${close}', got ${show(c)}`)
  }
}

/**
 * For a document that is not JSON: a hint when it looks like YAML (a `.yaml`/`.yml` name, or a
 * first line such as `apiVersion: v1`, `---` or `- item`), as most manifests on disk are; ''
 * otherwise. svcproxy reads JSON only, which kubectl writes with `-o json`.
 */
export function yamlHint (text: string, file: string): string {
  const first = text.split('\n', 64).map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#')) ?? ''
  const looks = /\.ya?ml$/i.test(file) || first === '---' || first.startsWith('- ') || /^[A-Za-z_][\w.-]*:(\s|$)/.test(first)
  return looks ? ' (this looks like YAML: svcproxy reads JSON only; kubectl writes it with -o json, e.g. kubectl get svc,endpoints,endpointslices,pods -A -o json > services.json)' : ''
}
