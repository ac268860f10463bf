/**
 * SSRF guard. A URL, and every redirect target, is refused when its host resolves to a loopback,
 * private, carrier-grade NAT, link-local, cloud-metadata, multicast, reserved or unspecified
 * address, unless the address is in the explicit allow list. The check runs inside the socket's
 * DNS lookup, so the address checked is the address connected to (no DNS-rebinding window); IP
 * literals (which skip DNS) are checked before the request.
 */
import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { ConfigError } from '../../infra/errors.js';

const FORBIDDEN_V4: [string, number, string][] = [
  ['0.0.0.0', 8, 'unspecified/"this network"'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'carrier-grade NAT (incl. Alibaba metadata 100.100.100.200)'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local (incl. cloud metadata 169.254.169.254)'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'IETF protocol assignments'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved/broadcast'],
  ['168.63.129.16', 32, 'Azure metadata/wireserver'],
];
const FORBIDDEN_V6: [string, number, string][] = [
  ['::', 128, 'unspecified'],
  ['::1', 128, 'loopback'],
  ['100::', 64, 'discard'],
  ['2001:db8::', 32, 'documentation'],
  ['fc00::', 7, 'unique local (incl. AWS metadata fd00:ec2::254)'],
  ['fe80::', 10, 'link-local'],
  ['ff00::', 8, 'multicast'],
];

/** The embedded IPv4 of an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address. */
function embeddedV4(ip: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(ip);
  if (!m) return undefined;
  if (m[1]) return m[1];
  const hi = parseInt(m[2]!, 16);
  const lo = parseInt(m[3]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

export type AddressVerdict = { allowed: true } | { allowed: false; why: string };

/** Which addresses a crawl may connect to. */
export class AddressPolicy {
  private readonly allow = new BlockList();
  private readonly rules: { list: BlockList; why: string }[] = [];

  /** @param allowAddresses IPs or CIDRs (e.g. "127.0.0.1", "10.1.0.0/16", "::1") exempt from refusal. */
  constructor(allowAddresses: readonly string[] = []) {
    for (const entry of allowAddresses) {
      const [addr, prefixText] = entry.trim().split('/');
      const type = isIP(addr ?? '');
      if (!addr || type === 0)
        throw new ConfigError(
          `allowAddresses entry ${JSON.stringify(entry)} is not an IP address or CIDR`,
          'use addresses like "127.0.0.1" or ranges like "10.0.0.0/8".',
        );
      const family = type === 4 ? 'ipv4' : 'ipv6';
      if (prefixText === undefined) this.allow.addAddress(addr, family);
      else {
        const prefix = Number(prefixText);
        if (!Number.isInteger(prefix) || prefix < 0 || prefix > (type === 4 ? 32 : 128))
          throw new ConfigError(
            `allowAddresses entry ${JSON.stringify(entry)} has a bad prefix length`,
            'use e.g. "10.0.0.0/8".',
          );
        this.allow.addSubnet(addr, prefix, family);
      }
    }
    for (const [net, prefix, why] of FORBIDDEN_V4) {
      const list = new BlockList();
      list.addSubnet(net, prefix, 'ipv4');
      this.rules.push({ list, why });
    }
    for (const [net, prefix, why] of FORBIDDEN_V6) {
      const list = new BlockList();
      list.addSubnet(net, prefix, 'ipv6');
      this.rules.push({ list, why });
    }
  }

  /** Verdict for one IP address (v4 or v6, no brackets). */
  check(ip: string): AddressVerdict {
    const type = isIP(ip);
    if (type === 0) return { allowed: false, why: `${JSON.stringify(ip)} is not an IP address` };
    const v4 = type === 6 ? embeddedV4(ip) : ip;
    const [addr, family] = v4 ? [v4, 'ipv4' as const] : [ip, 'ipv6' as const];
    if (this.allow.check(addr, family) || (v4 !== ip && this.allow.check(ip, 'ipv6'))) return { allowed: true };
    for (const r of this.rules) {
      if (r.list.check(addr, family)) return { allowed: false, why: `${ip} is ${r.why}` };
    }
    return { allowed: true };
  }
}

/** Error raised from the guarded lookup; fetcher maps `code` to the `blocked_address` reason. */
export class BlockedAddressError extends Error {
  readonly code = 'KILN_BLOCKED_ADDRESS';
  constructor(
    readonly host: string,
    readonly why: string,
  ) {
    super(`refused to connect to ${host}: ${why}`);
    this.name = 'BlockedAddressError';
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for net.connect that resolves every address of the host and refuses the connection
 * when any of them is forbidden (a host with one private address is treated as internal).
 */
export function createGuardedLookup(policy: AddressPolicy) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '');
      const list = addresses as LookupAddress[];
      for (const a of list) {
        const v = policy.check(a.address);
        if (!v.allowed)
          return callback(new BlockedAddressError(hostname, v.why) as unknown as NodeJS.ErrnoException, '');
      }
      if (list.length === 0)
        return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '');
      if (options.all) return callback(null, list);
      callback(null, list[0]!.address, list[0]!.family);
    });
  };
}
