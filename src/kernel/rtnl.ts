/**
 * The handle every rtnetlink operation (link.ts, address.ts, route.ts, neighbour.ts) takes: one
 * NETLINK_ROUTE socket bound to one network namespace. A plugin opens one for the host and one
 * for the container netns and then drives both from the host (DESIGN.md §4.3): only the socket
 * creation happens inside the namespace.
 */
import { closeSync } from 'node:fs';
import { withNetns, openNetnsFd } from './netns.js';
import { NetlinkSocket } from './netlink/socket.js';

/**
 * A link named by its interface name or its ifindex, or a link already looked up (its index is
 * used, its name only in messages): callers holding one skip a lookup per operation.
 */
export type LinkRef = string | number | { readonly index: number; readonly name: string };

/** The ifindex `ref` carries, if it carries one (a name needs a lookup). */
export function knownIndex(ref: LinkRef): number | undefined {
  if (typeof ref === 'string') return undefined;
  return typeof ref === 'number' ? ref : ref.index;
}

/** How messages name `ref`: the interface name when known. */
export function linkRefText(ref: LinkRef): string {
  if (typeof ref === 'object') return ref.name;
  return typeof ref === 'number' ? `ifindex ${ref}` : ref;
}

export interface Rtnl {
  readonly sock: NetlinkSocket;
  /** The netns path this handle works in, or undefined for the process's own (host) netns. */
  readonly netns: string | undefined;
  /** "host" or `netns <path>`: used in error messages (LinkNotFoundError's "where"). */
  readonly where: string;
  close(): void;
}

/** Opens an rtnetlink handle in the current (host) netns, or inside the netns at `netnsPath`. */
export function openRtnl(netnsPath?: string): Rtnl {
  const sock = netnsPath === undefined ? NetlinkSocket.open() : withNetns(netnsPath, () => NetlinkSocket.open());
  return {
    sock,
    netns: netnsPath,
    where: netnsPath === undefined ? 'host' : `netns ${netnsPath}`,
    close: () => sock.close(),
  };
}

/** Runs `fn` with a fresh handle and always closes it. */
export function withRtnl<T>(netnsPath: string | undefined, fn: (nl: Rtnl) => T): T {
  const nl = openRtnl(netnsPath);
  try {
    return fn(nl);
  } finally {
    nl.close();
  }
}

/**
 * Runs `fn` with an open fd on the netns at `path` (for IFLA_NET_NS_FD) and closes it after.
 * The kernel resolves the fd while handling the request, so it may be closed right after.
 */
export function withNetnsFd<T>(path: string, fn: (fd: number) => T): T {
  const fd = openNetnsFd(path);
  try {
    return fn(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * The request label netlink errors start with: `failed to <verb> "<name>"`. NetlinkError appends
 * `: <kernel's reason>`, giving the message shape DESIGN.md §4.9 asks for.
 */
export function op(verb: string, name: string): string {
  return `failed to ${verb} "${name}"`;
}
