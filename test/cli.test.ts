import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { fetchAll, nameServer, svcWithEndpoints, until, cliCommand, runCli } from './helpers.js'

const root = new URL('..', import.meta.url).pathname

interface Run { code: number | null, stdout: string, stderr: string }

/** Runs the CLI from its TypeScript source, as a user would run bin/svcproxy. */
function cli (args: string[]): ChildProcess {
  return spawn(...cliCommand(...args), { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
}

async function runToEnd (args: string[]): Promise<Run> {
  return await runCli(args)
}

/** Admin listeners on ephemeral ports, so a test daemon never collides with a real one. */
function adminFlags (): string[] {
  return ['--healthz-bind-address', '127.0.0.1:0', '--metrics-bind-address', '127.0.0.1:0']
}

function get (url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    request(url, { agent: false }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve(body))
    }).on('error', reject).end()
  })
}

t.test('validate: the shipped examples are valid', async (t) => {
  for (const f of ['gsw-k8s-3-service.json', 'httpd-svc.json', 'mysql.json']) {
    const r = await runToEnd(['validate', '-f', join(root, 'examples', f)])
    t.equal(r.code, 0, `${f}: ${r.stderr}`)
    t.match(r.stdout, /valid \(/)
  }
})

t.test('validate: every error with file, object, path and expectation; exit 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'bad.json')
  await writeFile(file, JSON.stringify([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' }, spec: { ports: [{ port: 70000 }] } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'b', namespace: 'prod' }, spec: { ports: [{ port: 80, protocol: 'SCTP' }] } },
  ]))
  const r = await runToEnd(['validate', '-f', file])
  t.equal(r.code, 1)
  const lines = r.stderr.trim().split('\n')
  t.equal(lines.length, 2, 'one line per error')
  t.match(lines[0], `${file}: Service default/a: spec.ports[0].port: `)
  t.match(lines[1], `${file}: Service prod/b: spec.ports[0].protocol: `)
  t.match(lines[1], /SCTP/)
})

t.test('unknown flags and missing files: one clear line, non-zero exit', async (t) => {
  const r1 = await runToEnd(['validate', '--no-such-flag'])
  t.equal(r1.code, 2)
  t.match(r1.stderr, /Unknown option '--no-such-flag'/)
  t.equal(r1.stderr.trim().split('\n').length, 1)
  const r2 = await runToEnd(['validate', '-f', '/nonexistent/x.json'])
  t.not(r2.code, 0)
  t.match(r2.stderr, /\/nonexistent\/x\.json/)
  const r3 = await runToEnd(['run', '--config', '/nonexistent/x.json', ...adminFlags()])
  t.not(r3.code, 0)
  t.equal(r3.stderr.trim().split('\n').length, 1, r3.stderr)
  const r4 = await runToEnd(['run', '--config', join(root, 'examples/mysql.json'), '--udp-timeout', 'soon', ...adminFlags()])
  t.equal(r4.code, 2)
  t.match(r4.stderr, /--udp-timeout: expected a duration/)
  const r5 = await runToEnd(['run', '--config', join(root, 'examples/mysql.json'), '--engine', 'fast', ...adminFlags()])
  t.not(r5.code, 0)
  t.match(r5.stderr, /--engine: expected uv or node, got "fast"/)
})

t.test('--help documents every flag of a command', async (t) => {
  const r = await runToEnd(['run', '--help'])
  t.equal(r.code, 0)
  for (const flag of ['--config', '--bind-address', '--hostname-override', '--nodeport-addresses', '--service-cluster-ip-range', '--udp-timeout', '--log-level', '--shutdown-grace']) {
    t.match(r.stdout, flag)
  }
  const top = await runToEnd(['--help'])
  t.match(top.stdout, /Commands:/)
})

t.test('run --config serves the file and follows an edit; SIGTERM exits 0', async (t) => {
  const a = await nameServer(t, 'a', '127.0.7.1')
  const b = await nameServer(t, 'b', '127.0.7.2')
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-run-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'svc.json')
  const port = 20000 + Math.floor(Math.random() * 5000)
  await writeFile(file, JSON.stringify(svcWithEndpoints('web', '127.50.2.1', port, [{ ip: '127.0.7.1', port: a.port }])))
  const child = cli(['run', '--config', file, '--log-level', 'warn', ...adminFlags()])
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  t.teardown(() => child.kill('SIGKILL'))
  t.ok(await until(() => stderr.includes('serving'), 60000), 'daemon started')
  t.equal(await fetchAll('127.50.2.1', port), 'a')
  await writeFile(file, JSON.stringify(svcWithEndpoints('web', '127.50.2.1', port, [{ ip: '127.0.7.2', port: b.port }])))
  t.ok(await until(async () => (await fetchAll('127.50.2.1', port)) === 'b', 5000), 'edit applied')
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0)
})

t.test('demo (on the node engine): three pods answer round-robin through the Service', async (t) => {
  const port = 20000 + Math.floor(Math.random() * 5000)
  const child = cli(['demo', '--port', String(port), '--log-level', 'warn', '--engine', 'node', ...adminFlags()])
  let stdout = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  t.teardown(() => child.kill('SIGKILL'))
  t.ok(await until(() => stdout.includes('Try:'), 60000), 'demo started')
  t.match(stdout, `curl -s http://127.96.0.80:${port}/`)
  const got: string[] = []
  for (let i = 0; i < 4; i++) got.push((await get(`http://127.96.0.80:${port}/`)).trim())
  t.same(got, ['hello-7d4b9-a1', 'hello-7d4b9-b2', 'hello-7d4b9-c3', 'hello-7d4b9-a1'])
  child.kill('SIGINT')
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0)
})

t.test('deprecations made to throw: the node engine is used, nothing deprecated is called', async (t) => {
  // process.binding (the uv engine's way to the handles) is DEP0111 under --pending-deprecation;
  // with --throw-deprecation its warning would be thrown from a tick and end the process.
  // Through sh with NODE_OPTIONS cleared: tap wraps spawn() to preload its own hooks into
  // children, and those call process.binding too.
  const [cmd, argv] = cliCommand('validate', '-f', join(root, 'examples/mysql.json'))
  const child = spawn('/bin/sh', ['-c', 'NODE_OPTIONS= exec "$0" "$@"', cmd, '--pending-deprecation', '--throw-deprecation', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 0, stderr)
  t.notMatch(stderr, /DEP0111/)
})

t.test('usage errors: exit 2, one line, one "svcproxy <command>:" prefix, saying what is wrong', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-usage-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const ok = join(dir, 'ok.json')
  await writeFile(ok, JSON.stringify(svcWithEndpoints('u', '127.50.3.1', 80, [])))
  const cases: Array<[string[], RegExp]> = [
    [['get', 'foo', '--redis', 'redis://127.0.0.1:1'], /^svcproxy get: expected services, endpoints, endpointslices or pods, got "foo"$/],
    [['delete', '--redis', 'redis://127.0.0.1:1'], /^svcproxy delete: -f FILE or "service\|endpoints\|endpointslice\|pod NAMESPACE\/NAME" is required$/],
    [['apply', '--redis', 'redis://127.0.0.1:1'], /^svcproxy apply: -f FILE is required$/],
    [['get', 'pods'], /^svcproxy get: --redis URL \(or REDIS_URL\) is required$/],
    [['run', '--config', ok, '--udp-timeout', '-1s', ...adminFlags()], /^svcproxy run: --udp-timeout: expected a duration such as 250ms, 30s or 1m30s, got "-1s"$/],
    [['run', '--config', ok, '--udp-timeout', '--engine', 'node', ...adminFlags()], /^svcproxy run: --udp-timeout: expected a value, got the flag that follows it/],
    [['run', '--config', ok, '--service-node-port-range', '5-2', ...adminFlags()], /^svcproxy run: --service-node-port-range: expected a port range such as 30000-32767, got "5-2"$/],
    [['validate', '-f', ok, '--service-node-port-range', '5-2'], /^svcproxy validate: --service-node-port-range: expected a port range/],
    [['validate', '-f', ok, '--service-cluster-ip-range', '10.0.0.0/33'], /^svcproxy validate: --service-cluster-ip-range: expected an IPv4 CIDR/],
    [['apply', '-f', ok, '--service-node-port-range', '5-2', '--redis', 'redis://127.0.0.1:1'], /^svcproxy apply: --service-node-port-range: expected a port range/],
    [['run', '--config', ok, '--bind-address', 'garbage', ...adminFlags()], /^svcproxy run: --bind-address: expected an IP address .*got "garbage"$/],
    [['run', '--config', ok, '--bind-address', '127.0.0.1:80', ...adminFlags()], /^svcproxy run: --bind-address: expected an IP address .*\(no port, no name\), got "127\.0\.0\.1:80"$/],
    [['demo', '--bind-address', 'localhost', ...adminFlags()], /^svcproxy demo: --bind-address: expected an IP address/],
    [['run', '--config', ok, '--sync-period', '5s', ...adminFlags()], /^svcproxy run: --sync-period applies to run --redis only/],
    [['run', '--config', ok, '--state-file', join(dir, 'state.json'), ...adminFlags()], /^svcproxy run: --state-file applies to run --redis only/],
    [['run', ok, ...adminFlags()], /^svcproxy run: unexpected argument ".*ok\.json" \(see svcproxy run --help\)$/],
    [['validate', '-f', ok, ok], /^svcproxy validate: -f .* and ".*": give the file once$/],
    [['version', 'now'], /^svcproxy version: unexpected argument "now"/],
    [['status', '--server', 'notaurl'], /^svcproxy status: --server: expected the daemon's admin URL/],
    [['status', '--metrics-bind-address', ''], /^svcproxy status: --metrics-bind-address is empty: give --server URL$/],
  ]
  for (const [args, want] of cases) {
    const r = await runToEnd(args)
    const lines = r.stderr.trim().split('\n')
    t.equal(r.code, 2, `${args.slice(0, 4).join(' ')}: exit 2`)
    t.equal(lines.length, 1, `${args[0] ?? ''}: one line (${r.stderr.trim()})`)
    t.match(lines[0], want, `${args[0] ?? ''}: says what is wrong`)
    t.notMatch(r.stderr, /svcproxy \w+: svcproxy /, 'the prefix once')
  }
})

t.test('--version and svcproxy version print the package version', async (t) => {
  const { version } = JSON.parse(await (await import('node:fs/promises')).readFile(join(root, 'package.json'), 'utf8')) as { version: string }
  for (const args of [['--version'], ['version']]) {
    const r = await runToEnd(args)
    t.equal(r.code, 0)
    t.equal(r.stdout, `svcproxy ${version}\n`, args.join(' '))
  }
  t.match((await runToEnd(['--help'])).stdout, /version +Print the svcproxy version/, 'a command in the help')
})

t.test('a YAML manifest: the error says only JSON is read and how to get it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-yaml-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  for (const [name, text] of [['svc.yaml', '{"apiVersion": "v1",\n  kind: Service\n'], ['svc.json', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n'], ['list.txt', '---\n- a\n']] as Array<[string, string]>) {
    const file = join(dir, name)
    await writeFile(file, text)
    const r = await runToEnd(['validate', '-f', file])
    t.equal(r.code, 1, `${name}: invalid input, exit 1`)
    t.match(r.stderr, /invalid JSON at line \d+, column \d+ .*\(this looks like YAML: svcproxy reads JSON only; kubectl writes it with -o json/, name)
  }
  const json = join(dir, 'broken.json')
  await writeFile(json, '{"a": }')
  t.notMatch((await runToEnd(['validate', '-f', json])).stderr, /YAML/, 'no hint for broken JSON')
})

t.test('status --server at a server that is not svcproxy says so', async (t) => {
  const { createServer } = await import('node:http')
  const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }); res.end('process_cpu_seconds_total 1\n') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as { port: number }
  const r = await runToEnd(['status', '--server', `http://127.0.0.1:${port}`])
  t.equal(r.code, 1)
  t.equal(r.stderr.trim(), `svcproxy status: http://127.0.0.1:${port}/v1/services: not a svcproxy daemon (the answer is not JSON: text/plain); is --server or --metrics-bind-address the daemon's metrics address?`)
  t.notMatch(r.stderr, /Unexpected token/)
})

t.test('run logs where node ports listen: every address by default, or what the flags narrow it to', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'svcproxy-np-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'svc.json')
  await writeFile(file, JSON.stringify(svcWithEndpoints('np', '127.50.3.2', 80, [])))
  for (const [flags, want] of [[[], 'node ports listen on every address of this node (0.0.0.0)'], [['--bind-address', '127.0.0.1'], 'node ports listen on 127.0.0.1'], [['--nodeport-addresses', '127.0.0.1/32'], 'node ports listen on 127.0.0.1']] as Array<[string[], string]>) {
    const child = cli(['run', '--config', file, ...flags, ...adminFlags()])
    let out = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
    t.teardown(() => child.kill('SIGKILL'))
    t.ok(await until(() => out.includes('serving'), 60000), 'daemon started')
    const line = out.split('\n').find((l) => l.includes('node ports listen on'))
    t.equal((JSON.parse(line ?? '{}') as { msg?: string }).msg, want, flags.join(' ') || 'no flags')
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
})
