import { networkInterfaces } from 'node:os'
import type { Logger } from 'pino'
import { ConfigError, VipError } from '../errors.js'
import { addressLine, ipBatch, linkAddresses, runIp } from './iproute.js'
import { CAP_NET_ADMIN, hasCapability } from './privilege.js'

/** A link name the kernel takes (IFNAMSIZ - 1) and that needs no quoting anywhere. */
const LINK_NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,14}$/

export function checkLinkName (name: string, flag = '--vip-interface'): void {
  if (!LINK_NAME.test(name)) throw new ConfigError(`${flag}: expected a link name of 1-15 letters, digits, "_", "-" or ".", got "${name}"`)
}

/** Addresses that are local without any link of ours: all of 127/8 and ::1 (the loopback routes). */
function loopback (ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1'
}

/**
 * The VIP interface (`--vip-interface`), as kube-proxy's IPVS mode keeps `kube-ipvs0`: a link
 * that holds every service address this node must bind and carries no traffic. Addresses are
 * counted by the frontends that need them: the first one adds the address (before it binds), the
 * last one to go removes it. Every change is one `ip -batch`, touching only its own addresses.
 */
export class VipInterface {
  readonly name: string
  /** 'dummy', or 'bridge' where the kernel has no dummy driver (a bridge with no ports holds addresses and carries nothing). */
  readonly kind: 'dummy' | 'bridge' | 'existing'
  private readonly logger: Logger
  /** Addresses on the link now. */
  private readonly present: Set<string>
  /** Frontends needing each address (only addresses this link must hold). */
  private readonly users = new Map<string, number>()
  /** Addresses held by another link: reported once, never taken. */
  private readonly foreign = new Set<string>()
  /** Addresses that could not be added, with ip's reason (status and metrics read it). */
  readonly failed = new Map<string, string>()
  /** Addresses added and removed since start, and adds or removes that failed (metrics). */
  added = 0
  removed = 0
  errors = 0

  private constructor (name: string, kind: VipInterface['kind'], present: string[], logger: Logger) {
    this.name = name
    this.kind = kind
    // The kernel's own IPv6 link-local address is not a service address: never counted, never pruned.
    this.present = new Set(present.filter((ip) => !ip.toLowerCase().startsWith('fe80:')))
    this.logger = logger
  }

  /**
   * Checks the privilege, then finds or creates the link. Throws VipError (the daemon does not
   * start) when the process lacks CAP_NET_ADMIN, `ip` is missing, or the link cannot be made.
   */
  static async open (name: string, logger: Logger): Promise<VipInterface> {
    checkLinkName(name)
    requireNetAdmin(name)
    let present = await linkAddresses(name)
    let kind: VipInterface['kind'] = 'existing'
    if (present === null) {
      kind = await createLink(name, logger)
      present = (await linkAddresses(name)) ?? []
    }
    // Left down, as kube-proxy leaves kube-ipvs0 (kubernetes#107662): the addresses are local
    // all the same (they bind and take routed traffic), the kernel adds 10,000 of them in less
    // than half the time it needs on a link that is up, and puts no fe80:: address on it.
    // NOARP: the node must not answer ARP for service addresses on its other links' behalf.
    const noarp = await runIp(['link', 'set', 'dev', name, 'arp', 'off'])
    if (noarp.code !== 0) throw new VipError(`--vip-interface ${name}: cannot set the link NOARP: ${noarp.stderr.trim()}`)
    const v = new VipInterface(name, kind, present, logger)
    logger.info({ link: name, kind, addresses: v.size }, 'vip interface ready')
    return v
  }

  /** Addresses on the link now (a copy). */
  addresses (): string[] {
    return [...this.present]
  }

  /** How many addresses are on the link now. */
  get size (): number {
    return this.present.size
  }

  /**
   * Adds, in one batch, the addresses a sync is about to need, before its frontends are created
   * in slices (each slice's acquire() then finds its addresses there). Counts no user: what no
   * frontend ends up using is removed by settle().
   */
  async prepare (ips: Iterable<string>): Promise<void> {
    const want: string[] = []
    let elsewhere: Set<string> | null = null
    for (const ip of ips) {
      if (this.present.has(ip) || this.users.has(ip) || loopback(ip) || ip === '0.0.0.0' || ip === '::') continue
      elsewhere ??= localAddresses(this.name)
      if (!elsewhere.has(ip)) want.push(ip)
    }
    await this.add(want)
  }

  /** After a sync: removes what prepare() added that no frontend took. */
  async settle (ips: Iterable<string>): Promise<void> {
    await this.remove([...new Set(ips)].filter((ip) => this.present.has(ip) && !this.users.has(ip)))
  }

  /** The address must be local before a frontend binds it: adds those that are not, in one batch. */
  async acquire (ips: Iterable<string>): Promise<void> {
    const want: string[] = []
    let elsewhere: Set<string> | null = null
    for (const ip of ips) {
      if (loopback(ip) || ip === '0.0.0.0' || ip === '::') continue
      const n = this.users.get(ip)
      if (n !== undefined) { this.users.set(ip, n + 1); continue }
      this.users.set(ip, 1)
      if (this.present.has(ip)) continue
      elsewhere ??= localAddresses(this.name)
      if (elsewhere.has(ip)) {
        if (!this.foreign.has(ip)) {
          this.foreign.add(ip)
          this.logger.warn({ link: this.name, address: ip }, 'service address is already held by another interface: left there, not taken over')
        }
        continue
      }
      want.push(ip)
    }
    await this.add(want)
  }

  /** A listener on `ip` failed to bind and is retried: add the address again if adding it failed. */
  async retry (ip: string): Promise<void> {
    if (this.failed.has(ip) && !this.present.has(ip)) await this.add([ip])
  }

  private async add (want: string[]): Promise<void> {
    if (want.length === 0) return
    const failed = await ipBatch(want.map((ip) => addressLine('add', ip, this.name)))
    want.forEach((ip, i) => {
      const why = failed.get(i + 1)
      // "File exists": someone (a previous run) put it there already; it is ours to hold now.
      if (why === undefined || /exists/i.test(why)) {
        this.present.add(ip)
        this.failed.delete(ip)
        if (why === undefined) this.added++
      } else {
        this.failed.set(ip, why)
        this.errors++
        this.logger.error({ link: this.name, address: ip, err: why }, 'cannot add service address to the vip interface; its frontends cannot bind')
      }
    })
  }

  /** Frontends stopped needing these addresses: those no frontend needs any more are removed, in one batch. */
  async release (ips: Iterable<string>): Promise<void> {
    const drop: string[] = []
    for (const ip of ips) {
      const n = this.users.get(ip)
      if (n === undefined) continue
      if (n > 1) { this.users.set(ip, n - 1); continue }
      this.users.delete(ip)
      this.foreign.delete(ip)
      this.failed.delete(ip)
      if (this.present.has(ip)) drop.push(ip)
    }
    await this.remove(drop)
  }

  /** Removes addresses on the link that no frontend needs (left over after a SIGKILL). */
  async prune (): Promise<number> {
    const stale = [...this.present].filter((ip) => !this.users.has(ip))
    if (stale.length > 0) this.logger.info({ link: this.name, addresses: stale.length }, 'removing addresses no service needs (left over from an earlier run)')
    await this.remove(stale)
    return stale.length
  }

  private async remove (ips: string[]): Promise<void> {
    if (ips.length === 0) return
    const failed = await ipBatch(ips.map((ip) => addressLine('del', ip, this.name)))
    ips.forEach((ip, i) => {
      const why = failed.get(i + 1)
      if (why !== undefined && !/cannot assign|not exist/i.test(why)) {
        this.errors++
        this.logger.warn({ link: this.name, address: ip, err: why }, 'cannot remove service address from the vip interface')
        return
      }
      this.present.delete(ip)
      this.removed++
    })
  }
}

function requireNetAdmin (name: string): void {
  if (!hasCapability(CAP_NET_ADMIN)) {
    throw new VipError(`--vip-interface ${name}: managing service addresses needs CAP_NET_ADMIN; run as root or grant it (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE; see docs/node.md)`)
  }
}

async function createLink (name: string, logger: Logger): Promise<'dummy' | 'bridge'> {
  const dummy = await runIp(['link', 'add', name, 'type', 'dummy'])
  if (dummy.code === 0) return 'dummy'
  if (dummy.code === 127) throw new VipError(`--vip-interface ${name}: the ip command (iproute2) is missing: ${dummy.stderr.trim()}`)
  // No dummy driver (some kernels, this project's CI among them): a bridge with no ports holds
  // addresses the same way and carries no traffic.
  const bridge = await runIp(['link', 'add', name, 'type', 'bridge'])
  if (bridge.code !== 0) throw new VipError(`--vip-interface ${name}: cannot create the link: dummy: ${dummy.stderr.trim()}; bridge: ${bridge.stderr.trim()}`)
  logger.warn({ link: name, dummy: dummy.stderr.trim() }, 'no dummy link driver in this kernel: the vip interface is a bridge with no ports (it holds addresses and carries no traffic)')
  return 'bridge'
}

/** Addresses of every interface but `except`. */
function localAddresses (except: string): Set<string> {
  const out = new Set<string>()
  for (const [name, list] of Object.entries(networkInterfaces())) {
    if (name === except) continue
    for (const a of list ?? []) out.add(a.address)
  }
  return out
}

/**
 * `svcproxy cleanup --vip-interface NAME`: removes every address on the link and the link
 * itself (kube-proxy's --cleanup). Returns how many addresses were removed; null when there was no link.
 */
export async function cleanupVipInterface (name: string, logger: Logger): Promise<number | null> {
  checkLinkName(name)
  requireNetAdmin(name)
  const present = await linkAddresses(name)
  if (present === null) return null
  const del = await runIp(['link', 'del', 'dev', name])
  if (del.code !== 0) throw new VipError(`--vip-interface ${name}: cannot delete the link: ${del.stderr.trim()}`)
  const n = present.filter((ip) => !ip.toLowerCase().startsWith('fe80:')).length
  logger.info({ link: name, addresses: n }, 'vip interface removed')
  return n
}
