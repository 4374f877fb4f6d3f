// A store behind TLS, mutual TLS and ACL users (issue 19): a real redis-server --tls-port with
// certificates made here by openssl, followed and written through rediss:// by the library and
// the CLI; each way it can go wrong is one line that says what to do.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { main } from '../lib/cli/main.js'
import { describeStoreError, redisTlsOptions } from '../lib/store/connect.js'
import { RedisStore } from '../lib/store/store.js'
import { watchRedis } from '../lib/sources/redis/source.js'
import { testProxy, until } from './helpers.js'
import { freePort, startRedis } from './redis-helpers.js'

interface Pki { dir: string, ca: string, serverCert: string, serverKey: string, clientCert: string, clientKey: string, rogueCert: string, rogueKey: string }

function openssl (args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A CA, a server certificate for 127.0.0.1, a client certificate it signed, and one from another CA. */
function makePki (t: { teardown: (fn: () => unknown) => void }): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'svcproxy-tls-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  for (const ca of ['ca', 'rogue-ca']) openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=${ca}`], dir)
  const leaf = (name: string, ca: string, ext: string[]): void => {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir)
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', ...ext], dir)
  }
  leaf('server', 'ca', ['-extfile', 'server.ext'])
  leaf('client', 'ca', [])
  leaf('rogue', 'rogue-ca', [])
  const p = (f: string): string => join(dir, f)
  return { dir, ca: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'), clientCert: p('client.crt'), clientKey: p('client.key'), rogueCert: p('rogue.crt'), rogueKey: p('rogue.key') }
}

/** A redis-server with a plain port (the test's own checks) and a TLS port, ACL users alice (svcproxy's keys) and bob (other keys only). */
async function tlsRedis (t: Parameters<typeof startRedis>[0], pki: Pki, authClients: 'yes' | 'no'): Promise<{ tlsPort: number, plain: Awaited<ReturnType<typeof startRedis>> }> {
  const tlsPort = await freePort()
  const plain = await startRedis(t, [
    '--tls-port', String(tlsPort), '--tls-cert-file', pki.serverCert, '--tls-key-file', pki.serverKey,
    '--tls-ca-cert-file', pki.ca, '--tls-auth-clients', authClients,
    // redis-server joins a directive's arguments: one argv entry per word.
    '--user', 'alice', 'on', '>alice-pw', '~{svcproxy}:*', '&*', '+@all',
    '--user', 'bob', 'on', '>bob-pw', '~other:*', '&*', '+@all',
  ])
  return { tlsPort, plain }
}

const doc = (ip: string): unknown => ({
  apiVersion: 'v1',
  kind: 'List',
  items: [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db', namespace: 'default' }, spec: { clusterIP: '127.96.7.7', ports: [{ port: 5432 }] } },
    { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'db', namespace: 'default' }, subsets: [{ addresses: [{ ip }], ports: [{ port: 5432 }] }] },
  ],
})

async function cli (args: string[]): Promise<{ code: number, stderr: string }> {
  let stderr = ''
  const saved = process.env.REDIS_URL
  process.env.REDIS_URL = ''
  try {
    const code = await main(args, { out: () => {}, err: (l) => { stderr += `${l}\n` } })
    return { code, stderr }
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL
    else process.env.REDIS_URL = saved
  }
}

t.test('TLS with an ACL user: the writer applies and a follower serves it, through rediss://', async (t) => {
  const pki = makePki(t)
  const { tlsPort } = await tlsRedis(t, pki, 'no')
  const url = `rediss://alice:alice-pw@127.0.0.1:${tlsPort}`
  const store = new RedisStore({ url, tls: { caFile: pki.ca } })
  t.teardown(() => store.close())
  const res = await store.apply(doc('10.9.0.1'))
  t.ok(res.revision > 0, 'applied over TLS as alice')
  const proxy = testProxy(t)
  const src = await watchRedis(proxy, { url, tls: { caFile: pki.ca }, syncPeriodMs: 60_000 })
  t.teardown(() => src.close())
  t.ok(await until(() => proxy.status().some((s) => s.name === 'db' && s.endpoints.some((e) => e.endpoint === '10.9.0.1:5432'))), 'the follower serves the store')
  await store.apply(doc('10.9.0.2'))
  t.ok(await until(() => proxy.status().some((s) => s.name === 'db' && s.endpoints.some((e) => e.endpoint === '10.9.0.2:5432'))), 'and follows its changes (the watch runs over TLS too)')
  t.equal(src.health().stale, false)
})

t.test('mutual TLS: no client certificate, or one from another CA, is one clear line; the right one works', async (t) => {
  const pki = makePki(t)
  const { tlsPort } = await tlsRedis(t, pki, 'yes')
  const url = `rediss://alice:alice-pw@127.0.0.1:${tlsPort}`

  const noCert = await cli(['get', 'services', '--redis', url, '--redis-ca-file', pki.ca])
  t.equal(noCert.code, 1)
  t.match(noCert.stderr, /client certificate/, noCert.stderr)
  t.notMatch(noCert.stderr, /max retries|enableOfflineQueue/)
  t.equal(noCert.stderr.trim().split('\n').length, 1, 'one line')

  const rogue = await cli(['get', 'services', '--redis', url, '--redis-ca-file', pki.ca, '--redis-cert-file', pki.rogueCert, '--redis-key-file', pki.rogueKey])
  t.equal(rogue.code, 1)
  t.match(rogue.stderr, /client certificate/, rogue.stderr)

  const file = join(pki.dir, 'db.json')
  writeFileSync(file, JSON.stringify(doc('10.9.0.3')))
  const ok = await cli(['apply', '-f', file, '--redis', url, '--redis-ca-file', pki.ca, '--redis-cert-file', pki.clientCert, '--redis-key-file', pki.clientKey])
  t.equal(ok.code, 0, ok.stderr)

  const proxy = testProxy(t)
  const src = await watchRedis(proxy, { url, tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey }, syncPeriodMs: 60_000 })
  t.teardown(() => src.close())
  t.ok(await until(() => proxy.status().some((s) => s.endpoints.some((e) => e.endpoint === '10.9.0.3:5432'))), 'a follower with the client certificate serves the store')
})

t.test('an untrusted server certificate, a wrong password, a missing ACL permission: each one line saying what to do', async (t) => {
  const pki = makePki(t)
  const { tlsPort, plain } = await tlsRedis(t, pki, 'no')

  const untrusted = await cli(['get', 'services', '--redis', `rediss://alice:alice-pw@127.0.0.1:${tlsPort}`])
  t.equal(untrusted.code, 1)
  t.match(untrusted.stderr, /not trusted .*--redis-ca-file/, untrusted.stderr)
  t.notMatch(untrusted.stderr, /max retries/)

  const wrongPass = await cli(['get', 'services', '--redis', `rediss://alice:nope@127.0.0.1:${tlsPort}`, '--redis-ca-file', pki.ca])
  t.equal(wrongPass.code, 1)
  t.match(wrongPass.stderr, /wrong user name or password/, wrongPass.stderr)

  const noPerm = await cli(['get', 'services', '--redis', `rediss://bob:bob-pw@127.0.0.1:${tlsPort}`, '--redis-ca-file', pki.ca])
  t.equal(noPerm.code, 1)
  t.match(noPerm.stderr, /ACL permission/, noPerm.stderr)

  const plainToTls = await cli(['get', 'services', '--redis', `rediss://alice:alice-pw@127.0.0.1:${plain.port}`, '--redis-ca-file', pki.ca])
  t.equal(plainToTls.code, 1)
  t.match(plainToTls.stderr, /no TLS handshake .*use redis:\/\//, plainToTls.stderr)

  // The follower reports the same words in its health (what /readyz says).
  const proxy = testProxy(t)
  const src = await watchRedis(proxy, { url: `rediss://alice:alice-pw@127.0.0.1:${tlsPort}`, startTimeoutMs: 500, syncPeriodMs: 60_000 })
  t.teardown(() => src.close())
  t.ok(await until(() => /not trusted/.test(src.health().reason)), src.health().reason)
})

t.test('TLS flags are checked before anything connects', async (t) => {
  const pki = makePki(t)
  t.throws(() => redisTlsOptions('redis://127.0.0.1:6390', { caFile: pki.ca }), { code: 'SVCPROXY_CONFIG', message: /--redis-ca-file needs a TLS store URL/ })
  t.throws(() => redisTlsOptions('rediss://127.0.0.1:6390', { certFile: pki.clientCert }), { message: /--redis-cert-file needs --redis-key-file/ })
  t.throws(() => redisTlsOptions('rediss://127.0.0.1:6390', { caFile: join(pki.dir, 'nope.crt') }), { message: /--redis-ca-file: cannot read .*nope\.crt: ENOENT/ })
  t.throws(() => redisTlsOptions('rediss://127.0.0.1:6390', { caFile: join(pki.dir, 'server.ext') }), { message: /holds no PEM block/ })
  t.same(Object.keys(redisTlsOptions('rediss://127.0.0.1:6390', { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey }) ?? {}).sort(), ['ca', 'cert', 'key'])
  t.equal(redisTlsOptions('redis://127.0.0.1:6390'), undefined)
  const r = await cli(['get', 'services', '--redis', 'redis://127.0.0.1:6390', '--redis-ca-file', pki.ca])
  t.equal(r.code, 2, 'a usage error')
  t.match(r.stderr, /--redis-ca-file needs a TLS store URL/, r.stderr)
  const run = await cli(['run', '--config', join(pki.dir, 'x.json'), '--redis-ca-file', pki.ca])
  t.equal(run.code, 2)
  t.match(run.stderr, /--redis-ca-file applies to run --redis only/)
  t.match(describeStoreError(Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' })), /not trusted/)
})
