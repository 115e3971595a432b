export { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus } from './plugin.js';
export type { Attachment } from './allocator.js';
export type { IpamDeps, IpamRequest, IpamResult } from './plugin.js';
export type { GcReport } from './gc.js';
export { ipamNetworkStats, ipamStats } from './stats.js';
export type { IpamNetworkStats } from './stats.js';
export { parseIpamConfig } from './config.js';
export type { IpamConfig, IpamRoute } from './config.js';
export * from './errors.js';
