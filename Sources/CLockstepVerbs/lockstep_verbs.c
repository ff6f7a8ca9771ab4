// See include/lockstep_verbs.h. Loaded at run time; built against the headers when present.
#define _GNU_SOURCE
#include "lockstep_verbs.h"

#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

int lsv_wake_create(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
void lsv_wake_signal(int fd) {
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0) { /* full or closed: a wake-up is pending anyway */ }
}
void lsv_wake_drain(int fd) {
    uint64_t value;
    if (read(fd, &value, sizeof value) < 0) { /* nothing pending */ }
}
void lsv_wake_close(int fd) { close(fd); }

// LOCKSTEP_NO_VERBS forces the stand-in (to check that it still builds where the headers are).
#if !defined(LOCKSTEP_NO_VERBS) && __has_include(<infiniband/verbs.h>) && __has_include(<rdma/rdma_cma.h>)
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// Private data of connect and accept: who we are and where the peer may write.
#define LSV_MAGIC 0x4c53524dU  // "LSRM"
#define LSV_VERSION 1
typedef struct __attribute__((packed)) {
    uint32_t magic;
    uint16_t version, reserved;
    uint64_t base;
    uint32_t rkey, ring_bytes, row_slot_bytes, row_slots;
} lsv_private;

struct lsv_fabric {
    lsv_sizes sizes;
    lsv_layout layout;
    struct rdma_event_channel *cm;
    struct rdma_cm_id *listener;
    struct ibv_context *verbs;
    struct ibv_pd *pd;
    struct ibv_comp_channel *channel;
    struct ibv_cq *cq;
    uint32_t next_id;
    char device[64];
};

struct lsv_conn {
    uint32_t id;
    lsv_fabric *f;
    struct rdma_cm_id *cm_id;
    uint8_t *memory;
    struct ibv_mr *mr;
    uint64_t remote_base;
    uint32_t remote_rkey;
    int established;
};

// The exported functions we call, resolved with dlsym (the inline ones go through ops).
#define LSV_FUNCTIONS(X) \
    X(ibverbs, ibv_get_device_list) X(ibverbs, ibv_free_device_list) X(ibverbs, ibv_get_device_name) \
    X(ibverbs, ibv_alloc_pd) X(ibverbs, ibv_dealloc_pd) X(ibverbs, ibv_create_comp_channel) \
    X(ibverbs, ibv_destroy_comp_channel) X(ibverbs, ibv_create_cq) X(ibverbs, ibv_destroy_cq) \
    X(ibverbs, ibv_get_cq_event) X(ibverbs, ibv_ack_cq_events) X(ibverbs, ibv_reg_mr) \
    X(ibverbs, ibv_dereg_mr) X(ibverbs, ibv_wc_status_str) \
    X(rdmacm, rdma_create_event_channel) X(rdmacm, rdma_destroy_event_channel) X(rdmacm, rdma_create_id) \
    X(rdmacm, rdma_destroy_id) X(rdmacm, rdma_bind_addr) X(rdmacm, rdma_listen) X(rdmacm, rdma_resolve_addr) \
    X(rdmacm, rdma_resolve_route) X(rdmacm, rdma_connect) X(rdmacm, rdma_accept) X(rdmacm, rdma_reject) \
    X(rdmacm, rdma_disconnect) X(rdmacm, rdma_get_cm_event) X(rdmacm, rdma_ack_cm_event) \
    X(rdmacm, rdma_create_qp) X(rdmacm, rdma_destroy_qp) X(rdmacm, rdma_event_str)

#define LSV_DECLARE(lib, name) static __typeof__(name) *p_##name;
LSV_FUNCTIONS(LSV_DECLARE)

static int loaded;

static int fail(char *err, size_t n, const char *format, const char *detail) {
    if (err && n) snprintf(err, n, format, detail ? detail : "");
    return -1;
}

static int load(char *err, size_t n) {
    if (loaded) return 0;
    void *ibverbs = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!ibverbs)
        return fail(err, n, "libibverbs.so.1 cannot be loaded (install libibverbs1 and ibverbs-providers; "
                            "under test, tools/with-emulated-rdma): %s", dlerror());
    void *rdmacm = dlopen("librdmacm.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!rdmacm)
        return fail(err, n, "librdmacm.so.1 cannot be loaded (install librdmacm1): %s", dlerror());
#define LSV_RESOLVE(lib, name) \
    if (!(p_##name = (__typeof__(name) *)dlsym(lib, #name))) return fail(err, n, "%s", "symbol " #name " missing from " #lib);
    LSV_FUNCTIONS(LSV_RESOLVE)
    loaded = 1;
    return 0;
}

int lsv_probe(char *device, size_t device_len, char *err, size_t err_len) {
    if (load(err, err_len)) return -1;
    int count = 0;
    struct ibv_device **list = p_ibv_get_device_list(&count);
    if (!list || count == 0) {
        if (list) p_ibv_free_device_list(list);
        return fail(err, err_len, "no RDMA device: ibv_get_device_list found none (%s); a host needs an RDMA NIC "
                                  "with its driver, or Soft-RoCE: rdma link add rxe0 type rxe netdev ETH",
                    strerror(errno));
    }
    snprintf(device, device_len, "%s", p_ibv_get_device_name(list[0]));
    p_ibv_free_device_list(list);
    return 0;
}

static lsv_layout make_layout(lsv_sizes s) {
    lsv_layout l;
    uint64_t rows = (uint64_t)s.row_slot_bytes * s.row_slots;
    l.recv_ring = 0;
    l.send_ring = l.recv_ring + s.ring_bytes;
    l.row_recv = l.send_ring + s.ring_bytes;
    l.row_send = l.row_recv + rows;
    l.credit_recv = l.row_send + rows;
    l.credit_send = l.credit_recv + 64;
    l.total = l.credit_send + 64;
    return l;
}

lsv_fabric *lsv_fabric_open(lsv_sizes sizes, char *err, size_t err_len) {
    char device[64];
    if (lsv_probe(device, sizeof device, err, err_len)) return NULL;
    lsv_fabric *f = calloc(1, sizeof *f);
    f->sizes = sizes;
    f->layout = make_layout(sizes);
    snprintf(f->device, sizeof f->device, "%s", device);
    f->cm = p_rdma_create_event_channel();
    if (!f->cm) {
        fail(err, err_len, "rdma_create_event_channel failed: %s (is rdma_ucm loaded?)", strerror(errno));
        free(f);
        return NULL;
    }
    fcntl(f->cm->fd, F_SETFL, fcntl(f->cm->fd, F_GETFL) | O_NONBLOCK);
    return f;
}

const char *lsv_fabric_device(const lsv_fabric *f) { return f->device; }
lsv_layout lsv_fabric_layout(const lsv_fabric *f) { return f->layout; }

// The protection domain, completion channel and the one completion queue, made for the first
// device a connection lands on.
static int ensure_resources(lsv_fabric *f, struct ibv_context *verbs, char *err, size_t n) {
    if (f->verbs == verbs) return 0;
    if (f->verbs) return fail(err, n, "%s", "connections on two RDMA devices at once are not supported");
    f->pd = p_ibv_alloc_pd(verbs);
    if (!f->pd) return fail(err, n, "ibv_alloc_pd failed: %s", strerror(errno));
    f->channel = p_ibv_create_comp_channel(verbs);
    if (!f->channel) return fail(err, n, "ibv_create_comp_channel failed: %s", strerror(errno));
    fcntl(f->channel->fd, F_SETFL, fcntl(f->channel->fd, F_GETFL) | O_NONBLOCK);
    int depth = 4 * 64 * (int)f->sizes.row_slots;
    if (depth > 16384) depth = 16384;
    f->cq = p_ibv_create_cq(verbs, depth, NULL, f->channel, 0);
    if (!f->cq) return fail(err, n, "ibv_create_cq failed: %s", strerror(errno));
    f->verbs = verbs;
    snprintf(f->device, sizeof f->device, "%s", p_ibv_get_device_name(verbs->device));
    return 0;
}

static int resolve(const char *host, int port, struct sockaddr_storage *out, char *err, size_t n) {
    struct addrinfo hints = {0}, *result = NULL;
    hints.ai_family = AF_INET;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &result);
    if (rc || !result) return fail(err, n, "cannot resolve the address: %s", gai_strerror(rc));
    memcpy(out, result->ai_addr, result->ai_addrlen);
    freeaddrinfo(result);
    return 0;
}

int lsv_listen(lsv_fabric *f, const char *host, int port, char *err, size_t n) {
    struct sockaddr_storage address;
    if (resolve(host, port, &address, err, n)) return -1;
    if (p_rdma_create_id(f->cm, &f->listener, NULL, RDMA_PS_TCP))
        return fail(err, n, "rdma_create_id failed: %s", strerror(errno));
    if (p_rdma_bind_addr(f->listener, (struct sockaddr *)&address))
        return fail(err, n, "rdma_bind_addr failed: %s (no RDMA device has this IP address?)", strerror(errno));
    if (p_rdma_listen(f->listener, 16)) return fail(err, n, "rdma_listen failed: %s", strerror(errno));
    if (f->listener->verbs && ensure_resources(f, f->listener->verbs, err, n)) return -1;
    return 0;
}

static lsv_conn *new_conn(lsv_fabric *f) {
    lsv_conn *c = calloc(1, sizeof *c);
    c->f = f;
    c->id = ++f->next_id;
    return c;
}

// Memory, registration, queue pair and the posted receives, before connect or accept (so the
// peer's first write never finds the receive queue empty).
static int setup_conn(lsv_conn *c, char *err, size_t n) {
    lsv_fabric *f = c->f;
    if (ensure_resources(f, c->cm_id->verbs, err, n)) return -1;
    if (posix_memalign((void **)&c->memory, 4096, f->layout.total)) return fail(err, n, "%s", "out of memory");
    memset(c->memory, 0, f->layout.total);
    c->mr = p_ibv_reg_mr(f->pd, c->memory, f->layout.total,
                         IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!c->mr) return fail(err, n, "ibv_reg_mr failed: %s (raise the memlock limit: ulimit -l)", strerror(errno));
    struct ibv_qp_init_attr attributes = {0};
    attributes.send_cq = f->cq;
    attributes.recv_cq = f->cq;
    attributes.qp_type = IBV_QPT_RC;
    attributes.cap.max_send_wr = 2 * f->sizes.row_slots + 16;
    attributes.cap.max_recv_wr = f->sizes.row_slots + 16;
    attributes.cap.max_send_sge = 1;
    attributes.cap.max_recv_sge = 1;
    if (p_rdma_create_qp(c->cm_id, f->pd, &attributes))
        return fail(err, n, "rdma_create_qp failed: %s", strerror(errno));
    for (uint32_t i = 0; i < f->sizes.row_slots + 8; i++)
        if (lsv_post_recv(c, (uint64_t)c->id << 8)) return fail(err, n, "ibv_post_recv failed: %s", strerror(errno));
    return 0;
}

static lsv_private own_private(lsv_conn *c) {
    lsv_private p = {LSV_MAGIC, LSV_VERSION, 0, (uint64_t)(uintptr_t)c->memory, c->mr->rkey,
                     c->f->sizes.ring_bytes, c->f->sizes.row_slot_bytes, c->f->sizes.row_slots};
    return p;
}

// Reads the peer's private data; 0 if it is ours and sized like ours.
static int take_private(lsv_conn *c, const void *data, uint8_t length, char *err, size_t n) {
    lsv_private p;
    if (!data || length < sizeof p) return fail(err, n, "%s", "the peer sent no Lockstep connection data");
    memcpy(&p, data, sizeof p);
    if (p.magic != LSV_MAGIC || p.version != LSV_VERSION)
        return fail(err, n, "%s", "the peer is not a Lockstep member of this version");
    if (p.ring_bytes != c->f->sizes.ring_bytes || p.row_slot_bytes != c->f->sizes.row_slot_bytes ||
        p.row_slots != c->f->sizes.row_slots)
        return fail(err, n, "%s", "the peer uses other ring sizes (all members must use the same)");
    c->remote_base = p.base;
    c->remote_rkey = p.rkey;
    return 0;
}

static void disconnect_conn(lsv_conn *c) {
    if (c->cm_id) {
        if (c->established) p_rdma_disconnect(c->cm_id);
        if (c->cm_id->qp) p_rdma_destroy_qp(c->cm_id);
        p_rdma_destroy_id(c->cm_id);
        c->cm_id = NULL;
    }
    c->established = 0;
}

static void destroy_conn(lsv_conn *c) {
    disconnect_conn(c);
    if (c->mr) p_ibv_dereg_mr(c->mr);
    free(c->memory);
    free(c);
}

lsv_conn *lsv_connect(lsv_fabric *f, const char *host, int port, char *err, size_t n) {
    struct sockaddr_storage address;
    if (resolve(host, port, &address, err, n)) return NULL;
    lsv_conn *c = new_conn(f);
    if (p_rdma_create_id(f->cm, &c->cm_id, c, RDMA_PS_TCP)) {
        fail(err, n, "rdma_create_id failed: %s", strerror(errno));
        free(c);
        return NULL;
    }
    if (p_rdma_resolve_addr(c->cm_id, NULL, (struct sockaddr *)&address, 2000)) {
        fail(err, n, "rdma_resolve_addr failed: %s", strerror(errno));
        destroy_conn(c);
        return NULL;
    }
    return c;
}

static void connection_parameters(struct rdma_conn_param *param, lsv_private *data) {
    memset(param, 0, sizeof *param);
    param->private_data = data;
    param->private_data_len = sizeof *data;
    param->responder_resources = 1;
    param->initiator_depth = 1;
    param->retry_count = 7;
    param->rnr_retry_count = 7;
}

/* How long rdma_resolve_route may take, in milliseconds. */
enum { LSV_ROUTE_TIMEOUT_MS = 2000 };

/* A dialed connection's route is known: set it up and send the connect request. */
static int cm_route_resolved(lsv_conn *c, struct rdma_cm_id *id, char *reason, size_t n) {
    if (setup_conn(c, reason, n)) return LSV_CM_FAILED;
    lsv_private data = own_private(c);
    struct rdma_conn_param param;
    connection_parameters(&param, &data);
    if (p_rdma_connect(id, &param)) {
        fail(reason, n, "rdma_connect failed: %s", strerror(errno));
        return LSV_CM_FAILED;
    }
    return LSV_CM_NONE;
}

/* A peer asks to connect: accept it (LSV_CM_INCOMING, *out_conn set) or refuse it. A refused
   request's id is destroyed here, after the event's acknowledgement, as rdma_cm requires: the
   caller must not acknowledge the event again (*acked = 1). */
static int cm_connect_request(lsv_fabric *f, struct rdma_cm_event *event, lsv_conn **out_conn, int *acked,
                              char *reason, size_t n) {
    struct rdma_cm_id *id = event->id;
    lsv_conn *c = new_conn(f);
    c->cm_id = id;
    id->context = c;
    const struct rdma_conn_param *asked = &event->param.conn;
    int refused = setup_conn(c, reason, n) || take_private(c, asked->private_data, asked->private_data_len, reason, n);
    if (refused) {
        p_rdma_reject(id, NULL, 0);
    } else {
        lsv_private data = own_private(c);
        struct rdma_conn_param param;
        connection_parameters(&param, &data);
        refused = p_rdma_accept(id, &param);
        if (refused) fail(reason, n, "rdma_accept failed: %s", strerror(errno));
    }
    if (refused) {
        c->cm_id = NULL;
        if (id->qp) p_rdma_destroy_qp(id);
        p_rdma_ack_cm_event(event);
        *acked = 1;
        p_rdma_destroy_id(id);
        destroy_conn(c);
        *out_conn = NULL;
        return LSV_CM_REFUSED;
    }
    *out_conn = c;
    return LSV_CM_INCOMING;
}

/* The connection is up; a dialed one learns the peer's memory from the accept's private data. */
static int cm_established(lsv_conn *c, struct rdma_cm_event *event, char *reason, size_t n) {
    const struct rdma_conn_param *answer = &event->param.conn;
    if (!c->remote_base && take_private(c, answer->private_data, answer->private_data_len, reason, n)) {
        return LSV_CM_FAILED;
    }
    c->established = 1;
    return LSV_CM_ESTABLISHED;
}

int lsv_cm_poll(lsv_fabric *f, lsv_cm_result *out) {
    memset(out, 0, sizeof *out);
    struct rdma_cm_event *event;
    if (p_rdma_get_cm_event(f->cm, &event)) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    struct rdma_cm_id *id = event->id;
    lsv_conn *c = id->context;
    char *reason = out->reason;
    size_t n = sizeof out->reason;
    int acked = 0;
    switch (event->event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
        if (p_rdma_resolve_route(id, LSV_ROUTE_TIMEOUT_MS)) {
            out->kind = LSV_CM_FAILED;
            fail(reason, n, "rdma_resolve_route failed: %s", strerror(errno));
        }
        break;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
        out->kind = cm_route_resolved(c, id, reason, n);
        break;
    case RDMA_CM_EVENT_CONNECT_REQUEST:
        out->kind = cm_connect_request(f, event, &c, &acked, reason, n);
        break;
    case RDMA_CM_EVENT_ESTABLISHED:
        out->kind = cm_established(c, event, reason, n);
        break;
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
        out->kind = LSV_CM_DISCONNECTED;
        fail(reason, n, "%s", p_rdma_event_str(event->event));
        break;
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
        out->kind = c && c->established ? LSV_CM_DISCONNECTED : LSV_CM_FAILED;
        snprintf(reason, n, "%s (status %d)", p_rdma_event_str(event->event), event->status);
        break;
    default:
        break;
    }
    out->conn = c;
    if (!acked) p_rdma_ack_cm_event(event);
    return 0;
}

uint32_t lsv_conn_id(const lsv_conn *c) { return c->id; }
uint8_t *lsv_conn_memory(lsv_conn *c) { return c->memory; }

int lsv_post_recv(lsv_conn *c, uint64_t wr_id) {
    if (!c->cm_id) return ENOTCONN;
    struct ibv_recv_wr wr = {0}, *bad = NULL;
    wr.wr_id = wr_id;
    wr.num_sge = 0;  // writes with immediate place their bytes by address; the receive takes none
    return ibv_post_recv(c->cm_id->qp, &wr, &bad);
}

int lsv_post_write(lsv_conn *c, uint64_t local_offset, uint64_t remote_offset, uint32_t len, int with_imm,
                   uint32_t imm, uint64_t wr_id) {
    if (!c->cm_id) return ENOTCONN;
    struct ibv_sge sge = {(uint64_t)(uintptr_t)(c->memory + local_offset), len, c->mr->lkey};
    struct ibv_send_wr wr = {0}, *bad = NULL;
    wr.wr_id = wr_id;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = imm;  // carried as is: both ends are Lockstep, no byte-order conversion needed
    wr.wr.rdma.remote_addr = c->remote_base + remote_offset;
    wr.wr.rdma.rkey = c->remote_rkey;
    return ibv_post_send(c->cm_id->qp, &wr, &bad);
}

void lsv_conn_disconnect(lsv_conn *c) { disconnect_conn(c); }
void lsv_conn_free(lsv_conn *c) { destroy_conn(c); }
void lsv_conn_close(lsv_conn *c) { destroy_conn(c); }

int lsv_poll(lsv_fabric *f, lsv_completion *out, int max) {
    if (!f->cq) return 0;
    struct ibv_wc wc[32];
    if (max > 32) max = 32;
    int got = ibv_poll_cq(f->cq, max, wc);
    for (int i = 0; i < got; i++) {
        out[i].wr_id = wc[i].wr_id;
        out[i].status = wc[i].status;
        out[i].imm = wc[i].imm_data;
        out[i].byte_len = wc[i].byte_len;
        // An error completion may not say its opcode; receives carry the tag 0 in the low byte.
        out[i].op = (wc[i].status == IBV_WC_SUCCESS ? (wc[i].opcode & IBV_WC_RECV) : ((wc[i].wr_id & 0xff) == 0))
                        ? LSV_OP_RECV : LSV_OP_SEND;
    }
    return got;
}

int lsv_arm(lsv_fabric *f) { return f->cq ? ibv_req_notify_cq(f->cq, 0) : 0; }

int lsv_block(lsv_fabric *f, int wake_fd, int timeout_ms) {
    struct pollfd fds[3] = {{wake_fd, POLLIN, 0}, {f->cm->fd, POLLIN, 0}, {f->channel ? f->channel->fd : -1, POLLIN, 0}};
    int rc = poll(fds, 3, timeout_ms);
    if (rc < 0) return errno == EINTR ? 0 : -1;
    if (fds[2].revents & POLLIN) {
        struct ibv_cq *cq;
        void *context;
        if (p_ibv_get_cq_event(f->channel, &cq, &context) == 0) p_ibv_ack_cq_events(cq, 1);
    }
    return 0;
}

const char *lsv_status_string(int status) { return loaded ? p_ibv_wc_status_str(status) : "unknown status"; }

void lsv_fabric_close(lsv_fabric *f) {
    if (f->listener) p_rdma_destroy_id(f->listener);
    if (f->cq) p_ibv_destroy_cq(f->cq);
    if (f->channel) p_ibv_destroy_comp_channel(f->channel);
    if (f->pd) p_ibv_dealloc_pd(f->pd);
    p_rdma_destroy_event_channel(f->cm);
    free(f);
}

#else  // built without the verbs headers: every entry point says so.

static const char *missing = "this lockstep was built without the RDMA headers (install libibverbs-dev and "
                             "librdmacm-dev, then rebuild)";

static int say_missing(char *err, size_t n) {
    if (err && n) snprintf(err, n, "%s", missing);
    return -1;
}

int lsv_probe(char *device, size_t device_len, char *err, size_t err_len) { return say_missing(err, err_len); }
lsv_fabric *lsv_fabric_open(lsv_sizes sizes, char *err, size_t err_len) {
    say_missing(err, err_len);
    return NULL;
}
void lsv_fabric_close(lsv_fabric *f) {}
lsv_layout lsv_fabric_layout(const lsv_fabric *f) { lsv_layout l = {0}; return l; }
const char *lsv_fabric_device(const lsv_fabric *f) { return ""; }
int lsv_listen(lsv_fabric *f, const char *host, int port, char *err, size_t n) { return say_missing(err, n); }
lsv_conn *lsv_connect(lsv_fabric *f, const char *host, int port, char *err, size_t n) {
    say_missing(err, n);
    return NULL;
}
int lsv_cm_poll(lsv_fabric *f, lsv_cm_result *out) { memset(out, 0, sizeof *out); return -1; }
uint32_t lsv_conn_id(const lsv_conn *c) { return 0; }
uint8_t *lsv_conn_memory(lsv_conn *c) { return NULL; }
int lsv_post_recv(lsv_conn *c, uint64_t wr_id) { return -1; }
int lsv_post_write(lsv_conn *c, uint64_t local_offset, uint64_t remote_offset, uint32_t len, int with_imm,
                   uint32_t imm, uint64_t wr_id) { return -1; }
void lsv_conn_close(lsv_conn *c) {}
void lsv_conn_disconnect(lsv_conn *c) {}
void lsv_conn_free(lsv_conn *c) {}
int lsv_poll(lsv_fabric *f, lsv_completion *out, int max) { return 0; }
int lsv_arm(lsv_fabric *f) { return 0; }
int lsv_block(lsv_fabric *f, int wake_fd, int timeout_ms) { return -1; }
const char *lsv_status_string(int status) { return missing; }

#endif
