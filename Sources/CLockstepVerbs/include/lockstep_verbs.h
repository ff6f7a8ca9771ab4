// The thin C shell under the RDMA transport (Sources/LockstepRuntime/RDMATransport.swift).
//
// libibverbs and librdmacm are loaded at run time with dlopen, never linked: a binary built
// here runs on a machine without them and says what is missing. The verbs structures come from
// the system headers when they are present at build time (`libibverbs-dev`, `librdmacm-dev`);
// without them this file builds a stand-in whose every call fails with "built without RDMA
// headers", so `swift build` works everywhere. Swift sees only this opaque interface: the
// verbs' inline functions and macros (ibv_post_send, ibv_reg_mr, ...) cannot be imported.
//
// Every call runs on the transport's poller thread; nothing here locks.
#ifndef LOCKSTEP_VERBS_H
#define LOCKSTEP_VERBS_H

#include <stddef.h>
#include <stdint.h>

typedef struct lsv_fabric lsv_fabric;
typedef struct lsv_conn lsv_conn;

/// Sizes of one connection's registered memory. Both ends must use the same (checked at connect).
typedef struct {
    uint32_t ring_bytes;       // each direction's data ring
    uint32_t row_slot_bytes;   // one row slot
    uint32_t row_slots;        // row slots; also the most unconsumed immediates (receive queue depth)
} lsv_sizes;

/// Offsets inside one connection's registered memory (the peer's has the same layout).
typedef struct {
    uint64_t recv_ring, send_ring, row_recv, row_send, credit_recv, credit_send, total;
} lsv_layout;

enum {
    LSV_CM_NONE = 0,
    LSV_CM_ESTABLISHED = 1,   // conn is ready (a dialed one, or one accepted)
    LSV_CM_FAILED = 2,        // a dialed conn could not be made (reason); destroy it
    LSV_CM_DISCONNECTED = 3,  // the peer disconnected or the connection broke
    LSV_CM_REFUSED = 4,       // an incoming request was refused (reason); nothing to do
    LSV_CM_INCOMING = 5,      // an incoming request was accepted: conn is new (its peer may write at once)
};

typedef struct {
    int kind;
    lsv_conn *conn;
    char reason[200];
} lsv_cm_result;

enum { LSV_OP_SEND = 1, LSV_OP_RECV = 2 };

typedef struct {
    uint64_t wr_id;
    uint32_t imm;
    uint32_t byte_len;
    int status;     // 0: success; otherwise an ibv_wc_status (see lsv_status_string)
    int op;         // LSV_OP_SEND (our write completed) or LSV_OP_RECV (a peer's write with immediate)
} lsv_completion;

/// Loads the libraries and lists devices: 0 and the first device's name, or -1 and why not.
int lsv_probe(char *device, size_t device_len, char *err, size_t err_len);

lsv_fabric *lsv_fabric_open(lsv_sizes sizes, char *err, size_t err_len);
void lsv_fabric_close(lsv_fabric *f);
lsv_layout lsv_fabric_layout(const lsv_fabric *f);
const char *lsv_fabric_device(const lsv_fabric *f);
int lsv_listen(lsv_fabric *f, const char *host, int port, char *err, size_t err_len);
/// Starts dialing; the outcome arrives as LSV_CM_ESTABLISHED or LSV_CM_FAILED for this conn.
lsv_conn *lsv_connect(lsv_fabric *f, const char *host, int port, char *err, size_t err_len);
/// One connection-manager event, without blocking (kind LSV_CM_NONE when there is none).
int lsv_cm_poll(lsv_fabric *f, lsv_cm_result *out);

uint32_t lsv_conn_id(const lsv_conn *c);
uint8_t *lsv_conn_memory(lsv_conn *c);
int lsv_post_recv(lsv_conn *c, uint64_t wr_id);
/// An RDMA WRITE (with_imm 0) or WRITE_WITH_IMM of `len` bytes at `local_offset` of this
/// connection's memory to `remote_offset` of the peer's. Signaled.
int lsv_post_write(lsv_conn *c, uint64_t local_offset, uint64_t remote_offset, uint32_t len, int with_imm,
                   uint32_t imm, uint64_t wr_id);
/// Disconnects and closes the queue pair: the peer can no longer write into this connection's
/// memory, which stays valid (the event loop may still be reading it) until lsv_conn_free.
void lsv_conn_disconnect(lsv_conn *c);
void lsv_conn_free(lsv_conn *c);
/// Both of the above.
void lsv_conn_close(lsv_conn *c);

int lsv_poll(lsv_fabric *f, lsv_completion *out, int max);
/// Asks for an event at the next completion (then poll once more before blocking).
int lsv_arm(lsv_fabric *f);
/// Sleeps until a completion event, a connection-manager event, `wake_fd` is readable, or
/// `timeout_ms` passes. Returns 0, or -1 on an error of poll(2).
int lsv_block(lsv_fabric *f, int wake_fd, int timeout_ms);

const char *lsv_status_string(int status);

/// The poller's wake-up: an eventfd (non-blocking) that the event loop signals.
int lsv_wake_create(void);
void lsv_wake_signal(int fd);
void lsv_wake_drain(int fd);
void lsv_wake_close(int fd);

#endif
