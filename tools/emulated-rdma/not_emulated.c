// Entry points of the verbs and rdma_cm APIs that Lockstep does not use: loud, never silent.
// (A separate file: it must not see the real prototypes.)
#include <stdio.h>
#include <stdlib.h>
#define NOT_EMULATED(name) \
    void name(void) { fprintf(stderr, "emulated rdma: " #name " is not emulated\n"); abort(); }
NOT_EMULATED(ibv_modify_qp)
NOT_EMULATED(ibv_query_qp)
NOT_EMULATED(ibv_query_device)
NOT_EMULATED(ibv_query_port)
NOT_EMULATED(ibv_query_gid)
NOT_EMULATED(ibv_query_pkey)
NOT_EMULATED(ibv_create_srq)
NOT_EMULATED(ibv_create_ah)
NOT_EMULATED(ibv_get_async_event)
NOT_EMULATED(ibv_resize_cq)
NOT_EMULATED(rdma_getaddrinfo)
NOT_EMULATED(rdma_create_ep)
NOT_EMULATED(rdma_join_multicast)
NOT_EMULATED(rdma_migrate_id)
NOT_EMULATED(rdma_get_devices)
