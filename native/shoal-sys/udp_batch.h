/* Batched UDP (udp_batch.c): adds recvBatch, sendBatch, pollReadable, pollClose to the exports. */
#ifndef SHOAL_UDP_BATCH_H
#define SHOAL_UDP_BATCH_H
#include <node_api.h>
#include <stdbool.h>

bool udp_batch_register(napi_env env, napi_value exports);

#endif
