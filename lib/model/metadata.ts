import { DNS1035_LABEL_HINT, DNS1123_LABEL_HINT, DNS1123_SUBDOMAIN_HINT, isDNS1035Label, isDNS1123Label, isDNS1123Subdomain } from './names.js'
import { type Ctx, EMPTY_RECORD, type Raw, describe, field, isRecord } from './reader.js'

export interface Meta {
  namespace: string
  name: string
  uid: string
  labels: Record<string, string>
  annotations: Record<string, string>
  /** metadata.deletionTimestamp is set. */
  deleting: boolean
}

/** Services need DNS-1035 labels (their names become DNS names); other kinds allow subdomains. */
export type NameRule = 'dns1035' | 'subdomain'

export function readMeta (ctx: Ctx, raw: Raw, rule: NameRule): Meta {
  const meta: Meta = { namespace: 'default', name: '', uid: '', labels: EMPTY_RECORD, annotations: EMPTY_RECORD, deleting: false }
  const m = field(raw, 'metadata')
  if (!isRecord(m)) {
    ctx.issue('metadata', `expected an object with a name, got ${describe(m)}`)
    return meta
  }
  const name = field(m, 'name')
  if (typeof name !== 'string' || name === '') {
    ctx.issue('metadata.name', `expected a non-empty name, got ${describe(name)}`)
  } else if (rule === 'dns1035' && !isDNS1035Label(name)) {
    ctx.issue('metadata.name', `expected a DNS-1035 label (${DNS1035_LABEL_HINT}), got ${describe(name)}`)
  } else if (rule === 'subdomain' && !isDNS1123Subdomain(name)) {
    ctx.issue('metadata.name', `expected a DNS-1123 subdomain (${DNS1123_SUBDOMAIN_HINT}), got ${describe(name)}`)
  } else {
    meta.name = name
  }
  const ns = ctx.str(m, 'namespace', 'metadata')
  if (ns !== undefined && ns !== '') {
    if (isDNS1123Label(ns)) meta.namespace = ns
    else ctx.issue('metadata.namespace', `expected a DNS-1123 label (${DNS1123_LABEL_HINT}), got ${describe(ns)}`)
  }
  meta.uid = ctx.str(m, 'uid', 'metadata') ?? ''
  meta.labels = ctx.stringMap(m, 'labels', 'metadata')
  meta.annotations = ctx.stringMap(m, 'annotations', 'metadata')
  meta.deleting = field(m, 'deletionTimestamp') !== undefined
  return meta
}

/**
 * Namespace and name as far as they can be read without validating, so issues
 * can name the object; null when the object cannot be named.
 */
export function identify (raw: Raw): { namespace: string, name: string } | null {
  const m = field(raw, 'metadata')
  if (!isRecord(m)) return null
  const name = field(m, 'name')
  const ns = field(m, 'namespace')
  if (typeof name !== 'string' || name === '' || name.length > 253) return null
  if (ns === undefined || ns === '') return { namespace: 'default', name }
  if (typeof ns !== 'string' || ns.length > 63) return null
  return { namespace: ns, name }
}
