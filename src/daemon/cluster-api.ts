/** The API status of a cluster request's error: input problems 400, conflicts 409, else as thrown. */
import { ApiError } from './api.js';
import { BlockClaimError } from '../cluster/overlay.js';
import { ClusterNetworkConflictError, ClusterNetworkInputError } from '../cluster/networks.js';
import { BlocksExhaustedError } from '../cluster/blocks.js';
import { ServiceError } from '../service/model.js';

export function clusterApiError(err: unknown): unknown {
  if (err instanceof ApiError) return err;
  if (err instanceof ClusterNetworkInputError || err instanceof ServiceError) return new ApiError(400, err.message);
  if (err instanceof ClusterNetworkConflictError || err instanceof BlocksExhaustedError) return new ApiError(409, err.message);
  if (err instanceof BlockClaimError) return new ApiError(err.status, err.message);
  return err;
}
