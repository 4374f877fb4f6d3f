// Name syntaxes from k8s.io/apimachinery/pkg/util/validation, so a manifest the
// API server accepts is accepted here, and vice versa.

const DNS1123_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/
const DNS1035_LABEL = /^[a-z](?:[-a-z0-9]*[a-z0-9])?$/
const IANA_SVC_NAME = /^[-a-z0-9]+$/

export function isDNS1123Label (s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s)
}

export function isDNS1035Label (s: string): boolean {
  return s.length <= 63 && DNS1035_LABEL.test(s)
}

export function isDNS1123Subdomain (s: string): boolean {
  if (s.length === 0 || s.length > 253) return false
  return s.split('.').every((label) => DNS1123_LABEL.test(label))
}

/** Container port names and named targetPorts: at most 15 characters, at least one letter, no `--`. */
export function isIANASvcName (s: string): boolean {
  return s.length >= 1 && s.length <= 15 && IANA_SVC_NAME.test(s) && /[a-z]/.test(s) &&
    !s.startsWith('-') && !s.endsWith('-') && !s.includes('--')
}

export const DNS1123_LABEL_HINT = 'lowercase letters, digits and \'-\', starting and ending with a letter or digit, at most 63 characters'
export const DNS1035_LABEL_HINT = 'lowercase letters, digits and \'-\', starting with a letter and ending with a letter or digit, at most 63 characters'
export const DNS1123_SUBDOMAIN_HINT = 'dot-separated lowercase labels of letters, digits and \'-\', at most 253 characters'
export const IANA_SVC_NAME_HINT = 'at most 15 lowercase letters, digits and \'-\', with at least one letter'
