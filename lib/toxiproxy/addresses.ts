import { lookup } from 'node:dns/promises'
import { createServer } from 'node:net'
import { addressClass, ipFamily } from '../model/ip.js'
import { ApiFailure, badRequest } from './http.js'

/** `host:port` or `[v6]:port` split; the host may be a name ("localhost"), '' or an address. */
export interface HostPort { host: string, port: number }

/** Splits `listen`/`upstream` as Go's net.SplitHostPort does; the port must be 0-65535. */
export function splitHostPort (text: string, field: string): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw badRequest(`${field}: expected HOST:PORT, got ${JSON.stringify(text)}`)
  return { host: m[1] ?? m[2] ?? '', port }
}

/** `ip:port`, brackets around an IPv6 address (Go's net.JoinHostPort). */
export function joinHostPort (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * A name ("localhost", "redis.local") to one address, IPv4 first (a test's "localhost" means
 * 127.0.0.1 whatever the resolver's order). An address is returned as it is.
 */
export async function resolveHost (host: string, field: string): Promise<string> {
  if (ipFamily(host) !== 0) return host
  try {
    const all = await lookup(host, { all: true })
    const pick = all.find((a) => a.family === 4) ?? all[0]
    if (pick !== undefined) return pick.address
  } catch {}
  throw badRequest(`${field}: cannot resolve host ${JSON.stringify(host)}`)
}

/**
 * The address a proxy listens on. '' (Toxiproxy: every address) is refused like 0.0.0.0: a
 * service address names one host here (docs/toxiproxy.md).
 */
export async function listenAddress (text: string): Promise<HostPort> {
  const hp = splitHostPort(text === '' ? '127.0.0.1:0' : text, 'listen')
  if (hp.host === '') throw badRequest('listen: expected an address to listen on (e.g. 127.0.0.1:26379); svcproxy serves a service address, never every address of the node')
  const ip = await resolveHost(hp.host, 'listen')
  const cls = addressClass(ip)
  if (cls === 'unspecified') throw badRequest(`listen: expected the address of one host, got ${JSON.stringify(ip)}: svcproxy serves a service address, never every address of the node (use 127.0.0.1 or this node's address)`)
  if (cls !== 'unicast') throw badRequest(`listen: expected a unicast address, got ${JSON.stringify(ip)}`)
  return { host: ip, port: hp.port }
}

/** The endpoint a proxy forwards to. */
export async function upstreamAddress (text: string): Promise<HostPort> {
  const hp = splitHostPort(text, 'upstream')
  if (hp.host === '') hp.host = '127.0.0.1' // Go dials "" as the local host
  if (hp.port === 0) throw badRequest(`upstream: expected a port 1-65535, got ${JSON.stringify(text)}`)
  return { host: await resolveHost(hp.host, 'upstream'), port: hp.port }
}

/** A free TCP port on `host` now (the kernel's pick), for a `listen` with port 0. */
export async function freePortOn (host: string): Promise<number> {
  const s = createServer()
  return await new Promise<number>((resolve, reject) => {
    s.once('error', (err: NodeJS.ErrnoException) => { reject(new ApiFailure(500, `listen tcp ${joinHostPort(host, 0)}: ${err.code ?? err.message}`)) })
    s.listen(0, host, () => {
      const a = s.address()
      s.close(() => { if (a !== null && typeof a !== 'string') resolve(a.port); else reject(new ApiFailure(500, 'no port')) })
    })
  })
}

/**
 * The Service that holds every API-created proxy listening on one address (a clusterIP is one
 * service's): `listen-127-0-0-1`, `listen-v6-0000-...-0001`.
 */
export function hostServiceName (ip: string): string {
  if (ipFamily(ip) === 4) return `listen-${ip.replaceAll('.', '-')}`
  const [head = '', tail = ''] = ip.toLowerCase().split('::')
  const h = head === '' ? [] : head.split(':')
  const tl = tail === '' ? [] : tail.split(':')
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl] : h
  return `listen-v6-${groups.map((g) => g.padStart(4, '0')).join('-').replaceAll('.', '-')}`
}
