// Records from the store into the proxy. A record that does not validate, or that conflicts with
// what is served, is logged by key and skipped: one bad record must not stop the others.

import type { Logger } from 'pino'
import { type ValidationError, formatIssue } from '../../errors.js'
import type { KubeObject } from '../../model/types.js'
import type { ServiceProxy } from '../../api/service-proxy.js'
import { decodeRecord } from '../../store/records.js'
import type { ObjectRef } from '../../table/refs.js'
import type { RedisSourceStats } from './types.js'

export class ProxyWriter {
  /** `objectsKey` names the hash in logs, so a bad record can be found with HGET. */
  constructor (private readonly proxy: ServiceProxy, private readonly log: Logger, private readonly stats: RedisSourceStats, private readonly objectsKey: string) {}

  /** One revision into the proxy; when the batch conflicts in the table, object by object. */
  async write (upserts: KubeObject[], deletes: ObjectRef[], rev: number): Promise<number> {
    if (upserts.length === 0 && deletes.length === 0) return 0
    const label = `redis@${rev}`
    try {
      return (await this.proxy.write(upserts, deletes, label)).changed.length
    } catch (err) {
      if ((err as { code?: string }).code !== 'SVCPROXY_INVALID') throw err
    }
    let changed = 0
    if (deletes.length > 0) changed += (await this.proxy.write([], deletes, label)).changed.length
    for (const o of upserts) {
      try {
        changed += (await this.proxy.write([o], [], label)).changed.length
      } catch (err) {
        const key = `${o.kind}/${o.namespace}/${o.name}`
        this.stats.badRecords++
        this.log.error({ key, revision: rev, errors: issuesOf(err) }, 'record conflicts with the served state; skipped')
      }
    }
    return changed
  }

  decode (key: string, text: string, rev: number): KubeObject | undefined {
    try {
      return decodeRecord(key, text)
    } catch (err) {
      this.stats.badRecords++
      this.log.error({ key: `${this.objectsKey} ${key}`, revision: rev, errors: issuesOf(err) }, 'bad record in the store; skipped (its last good version, if any, keeps serving)')
      return undefined
    }
  }
}

function issuesOf (err: unknown): string[] {
  const issues = (err as Partial<ValidationError>).issues
  return Array.isArray(issues) ? issues.map(formatIssue) : [(err as Error).message]
}
