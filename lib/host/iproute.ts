import { spawn } from 'node:child_process'

/**
 * iproute2, driven without a shell: `ip` is spawned with an argument array, and batches go to
 * `ip -force -batch -` on stdin, one command per line, built only from validated IP literals
 * and a validated link name. One process per change, whatever its size: 10,000 addresses are
 * one batch.
 */

export interface IpResult { code: number, stdout: string, stderr: string }

/** Runs `ip ARGS` (stdin: `input`); never rejects: a missing `ip` is code 127 with its error text. */
export function runIp (args: string[], input?: string): Promise<IpResult> {
  return new Promise((resolve) => {
    let stdout = ''
    let stderr = ''
    let done = false
    const finish = (r: IpResult): void => { if (!done) { done = true; resolve(r) } }
    const child = spawn('ip', args, { stdio: ['pipe', 'pipe', 'pipe'] })
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
    child.on('error', (err: NodeJS.ErrnoException) => { finish({ code: err.code === 'ENOENT' ? 127 : 1, stdout, stderr: `ip: ${err.message}` }) })
    child.on('close', (code) => { finish({ code: code ?? 1, stdout, stderr }) })
    child.stdin.on('error', () => {}) // ip exited early: its exit code says why
    child.stdin.end(input ?? '')
  })
}

/**
 * Runs a batch; returns the 1-based numbers of the lines that failed, with ip's message for
 * each (`-force` goes on after a failure and names the line: "Command failed -:N").
 */
export async function ipBatch (lines: string[]): Promise<Map<number, string>> {
  const failed = new Map<number, string>()
  if (lines.length === 0) return failed
  const r = await runIp(['-force', '-batch', '-'], lines.join('\n') + '\n')
  if (r.code === 0) return failed
  let last = ''
  for (const l of r.stderr.split('\n')) {
    const m = /Command failed -:(\d+)/.exec(l)
    if (m !== null) failed.set(Number(m[1]), last)
    else if (l.trim() !== '') last = l.trim()
  }
  // A failure ip did not attribute to a line (it could not start, say): every line failed.
  if (failed.size === 0) for (let i = 1; i <= lines.length; i++) failed.set(i, r.stderr.trim())
  return failed
}

/** The addresses on a link, or null when the link does not exist. */
export async function linkAddresses (link: string): Promise<string[] | null> {
  const r = await runIp(['-json', 'address', 'show', 'dev', link])
  if (r.code !== 0) return null
  const out: string[] = []
  for (const l of JSON.parse(r.stdout === '' ? '[]' : r.stdout) as Array<{ addr_info?: Array<{ local?: string }> }>) {
    for (const a of l.addr_info ?? []) if (typeof a.local === 'string') out.push(a.local)
  }
  return out
}

/** The address as one `ip` batch line; `nodad`: an IPv6 VIP is usable at once, not tentative. */
export function addressLine (verb: 'add' | 'del', ip: string, link: string): string {
  const v6 = ip.includes(':')
  return `address ${verb} ${ip}/${v6 ? 128 : 32} dev ${link}${v6 && verb === 'add' ? ' nodad' : ''}`
}
