import { ShoalError } from '../errors.js';

/** A system call failed. `errno` is the positive errno value, `errnoName` its symbol (ENOENT). */
export class SyscallError extends ShoalError {
  readonly errno: number;
  readonly errnoName: string;
  readonly syscall: string;

  constructor(syscall: string, errno: number, errnoName: string, detail?: string, options?: { cause?: unknown }) {
    const what = detail ? `${syscall} ${detail}` : syscall;
    super('ESYSCALL', `${what}: ${errnoName} (${errnoDescription(errno)})`, options);
    this.errno = errno;
    this.errnoName = errnoName;
    this.syscall = syscall;
  }
}

/**
 * The kernel refused a netlink request. `message` carries the kernel's extended-ack text when
 * it sent one (e.g. "VXLAN ID must be lower than 16777216"), so users see the real reason.
 */
export class NetlinkError extends ShoalError {
  readonly errno: number;
  readonly errnoName: string;
  readonly kernelMessage: string | undefined;

  constructor(request: string, errno: number, errnoName: string, kernelMessage?: string) {
    const reason = kernelMessage ? `${kernelMessage} (${errnoName})` : `${errnoName} (${errnoDescription(errno)})`;
    super('ENETLINK', `${request}: ${reason}`);
    this.errno = errno;
    this.errnoName = errnoName;
    this.kernelMessage = kernelMessage;
  }
}

export class LinkNotFoundError extends ShoalError {
  readonly link: string;
  constructor(link: string, where = 'host', options?: { cause?: unknown }) {
    super('ELINKNOTFOUND', `link "${link}" not found in ${where}`, options);
    this.link = link;
  }
}

export class LinkExistsError extends ShoalError {
  readonly link: string;
  constructor(link: string, where = 'host', options?: { cause?: unknown }) {
    super('ELINKEXISTS', `link "${link}" already exists in ${where}`, options);
    this.link = link;
  }
}

export class NetnsNotFoundError extends ShoalError {
  readonly netns: string;
  constructor(netns: string, options?: { cause?: unknown }) {
    super('ENETNSNOTFOUND', `network namespace "${netns}" not found`, options);
    this.netns = netns;
  }
}

/** `nft` refused a transaction or could not be run; `stderr` is nft's own explanation. */
export class NftablesError extends ShoalError {
  readonly stderr: string;
  constructor(message: string, stderr = '', options?: { cause?: unknown }) {
    super('ENFTABLES', stderr ? `${message}: ${stderr.trim()}` : message, options);
    this.stderr = stderr;
  }
}

export class SysctlError extends ShoalError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ESYSCTL', message, options);
  }
}

const DESCRIPTIONS: Record<number, string> = {
  1: 'operation not permitted',
  2: 'no such file or directory',
  3: 'no such process',
  9: 'bad file descriptor',
  11: 'resource temporarily unavailable',
  12: 'out of memory',
  13: 'permission denied',
  16: 'device or resource busy',
  17: 'file exists',
  19: 'no such device',
  22: 'invalid argument',
  24: 'too many open files',
  34: 'numerical result out of range',
  93: 'protocol not supported',
  95: 'operation not supported',
  97: 'address family not supported',
  98: 'address already in use',
  99: 'cannot assign requested address',
  101: 'network is unreachable',
  105: 'no buffer space available',
  110: 'timed out',
};

export function errnoDescription(errno: number): string {
  return DESCRIPTIONS[errno] ?? `errno ${errno}`;
}

/** Creating, entering or deleting a network namespace failed for a reason other than "not found". */
export class NetnsError extends ShoalError {
  readonly netns: string;
  constructor(netns: string, message: string, options?: { cause?: unknown }) {
    super('ENETNS', message, options);
    this.netns = netns;
  }
}
