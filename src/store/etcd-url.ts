/**
 * `--store etcd://host:port[,host:port...]` (DESIGN.md §2) parsed into endpoints. Pure, and kept
 * apart from etcd.ts so whatever parses options never loads the etcd client.
 */
import { ShoalError } from '../errors.js';

export const ETCD_DEFAULT_PORT = 2379;

export class StoreUrlError extends ShoalError {
  constructor(url: string, problem: string) {
    super('ESTOREURL', `invalid store "${url}": ${problem}`);
  }
}

/** `host:port` endpoints of an `etcd://` store URL; IPv6 hosts in brackets, port 2379 by default. */
export function parseEtcdUrl(url: string): string[] {
  const m = /^etcd:\/\/(.*)$/.exec(url);
  if (!m) throw new StoreUrlError(url, 'expected etcd://host:port[,host:port...]');
  const list = m[1]!.replace(/\/+$/, '');
  if (list === '') throw new StoreUrlError(url, 'no endpoint');
  const endpoints: string[] = [];
  for (const item of list.split(',')) {
    const e = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(item.trim());
    if (!e) throw new StoreUrlError(url, `"${item}" is not host[:port]`);
    const port = e[3] === undefined ? ETCD_DEFAULT_PORT : Number(e[3]);
    if (port < 1 || port > 65535) throw new StoreUrlError(url, `port ${e[3]} is out of range`);
    const endpoint = e[1] !== undefined ? `[${e[1]}]:${port}` : `${e[2]}:${port}`;
    if (!endpoints.includes(endpoint)) endpoints.push(endpoint);
  }
  return endpoints;
}
