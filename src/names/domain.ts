// Domain names as DNSLink takes them (no IPNS machinery: what /v2 and the gateway check first).

// RFC 1035 labels, at least two of them (a DNSLink domain always has a dot): `app.example.com`.
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i

/** Whether `text` is written as a domain name (whether it has a DNSLink is DNS's to say). */
export function looksLikeDomain (text: string): boolean {
  return DOMAIN.test(text)
}
