/**
 * Asking the host's daemon for a new address block of a cluster network (DESIGN §7): plugins
 * never talk to etcd (a gRPC client costs far more than a plugin's whole start-up), so the
 * daemon claims the block in etcd, mirrors it into the local store and answers. Without an
 * answer the ADD fails with code 11 (try again later) and says why.
 */
import http from 'node:http';
import { ShoalError } from '../errors.js';

/** Long enough for an etcd transaction through a leader election on a loaded machine (claims took up to 3 s with ten nodes claiming at once on 2 busy cores); well short of a runtime's ADD timeout (the CRI allows 4 min). */
const REQUEST_TIMEOUT_MS = 30_000;

export class BlockRequestError extends ShoalError {
  constructor(network: string, socket: string, reason: string) {
    super(
      'ETRYAGAIN',
      `network "${network}" needs a new address block on this node and the Shoal daemon did not give one (${reason}) at ${socket}: start "shoal daemon" joined to the cluster, then try again`,
    );
  }
}

/** POST /v1/blocks; resolves to the claimed block's CIDR. */
export function requestBlock(socketPath: string, network: string, family: 4 | 6): Promise<string> {
  const body = JSON.stringify({ network, family });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, path: '/v1/blocks', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let doc: { cidr?: unknown; error?: unknown } = {};
          try {
            doc = JSON.parse(text) as typeof doc;
          } catch {
            // reported below
          }
          if (res.statusCode === 200 && typeof doc.cidr === 'string') return resolve(doc.cidr);
          const why = typeof doc.error === 'string' ? doc.error : `HTTP ${res.statusCode ?? '?'}`;
          reject(new BlockRequestError(network, socketPath, why));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err: NodeJS.ErrnoException) => reject(new BlockRequestError(network, socketPath, err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'the daemon is not running' : err.message)));
    req.end(body);
  });
}
