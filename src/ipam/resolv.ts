import { readFileSync } from 'node:fs';
import { InvalidIpamConfigError } from './errors.js';

export interface DnsConfig {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** Parses resolv.conf text the way host-local does: nameserver, domain, search, options. */
export function parseResolvConf(text: string): DnsConfig {
  const dns: DnsConfig = {};
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/[#;].*$/, '').trim();
    const [keyword, ...values] = line.split(/\s+/);
    if (!keyword || values.length === 0) continue;
    switch (keyword) {
      case 'nameserver':
        (dns.nameservers ??= []).push(values[0]!);
        break;
      case 'domain':
        dns.domain = values[0]!;
        break;
      case 'search':
        dns.search = values;
        break;
      case 'options':
        (dns.options ??= []).push(...values);
        break;
    }
  }
  return dns;
}

export function readResolvConf(file: string): DnsConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidIpamConfigError('ipam.resolvConf', file, `cannot be read: ${(err as Error).message}`);
  }
  return parseResolvConf(text);
}
