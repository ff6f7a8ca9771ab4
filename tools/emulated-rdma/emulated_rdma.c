// A test-only stand-in for libibverbs.so.1 and librdmacm.so.1: an emulated RC fabric between
// processes on one machine, so the RDMA transport's own code runs end to end where there is no
// RDMA hardware (../shared/RDMA-TESTING.md, layer B). Built by tools/with-emulated-rdma; never
// part of the lockstep binary.
//
// What it emulates:
// - one device, "emulated"; protection domains, memory registration (rkey checked against the
//   target's table: a bad rkey completes with IBV_WC_REM_ACCESS_ERR, as rxe does);
// - RC queue pairs: RDMA WRITE, WRITE_WITH_IMM and SEND, executed by the sender's process with
//   process_vm_writev straight into the target's registered memory, in posting order; a write
//   with immediate or a send consumes a posted receive at the target (none posted: the sender
//   gets IBV_WC_RNR_RETRY_EXC_ERR) and completes there; a target that died gives
//   IBV_WC_RETRY_EXC_ERR; an error moves the queue pair to the error state (later work requests
//   are flushed), as RC does;
// - completion queues and completion channels (a pollable socket per channel);
// - rdma_cm: event channels, listen/resolve/connect/accept/reject/disconnect with private
//   data, over datagrams between abstract Unix sockets; listeners are found by their address
//   through a file in /dev/shm.
// Shared state (registrations, queue pairs' receive queues, completion queues) lives in one
// shared-memory segment per process (/dev/shm/lsfab-PID) behind a robust process-shared mutex.
//
// Modes, from the environment:
// - LOCKSTEP_EMULATED_RDMA_DELAY_US=N: asynchronous completion. Work requests run on a fabric
//   thread after a random delay of up to N microseconds (posting order kept), so a sender that
//   reuses a buffer before its completion, or overruns the receiver's window, is caught.
// - LOCKSTEP_EMULATED_RDMA_FAULT=rkey@K or rnr@K: from the K-th write with immediate of this
//   process on, every one fails as if its rkey were wrong, or as if the receiver had no receive
//   posted (so every queue pair of the process breaks, one after the other). silent@K: from the
//   K-th on, nothing this process posts is placed or completes (a peer that stops answering,
//   with no completion at all, as rxe behaves for a dead peer).
// Anything else of the verbs API aborts loudly (it is not emulated).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define MAX_MR 256
#define MAX_QP 64
#define MAX_CQ 8
#define CQ_DEPTH 16384
#define RQ_DEPTH 2048

static void die(const char *format, ...) {
    va_list a;
    va_start(a, format);
    fprintf(stderr, "emulated rdma: ");
    vfprintf(stderr, format, a);
    fprintf(stderr, "\n");
    va_end(a);
    abort();
}

// ---- shared state ----

struct s_mr { uint32_t used, key; uint64_t addr, length; int access; };
struct s_rq { uint64_t wr_id, addr; uint32_t length, lkey; };
struct s_qp { uint32_t used, qpn; int state, cq; uint32_t head, tail; struct s_rq rq[RQ_DEPTH]; };
struct s_cq { uint32_t used; int armed; uint32_t head, tail; char channel[64]; struct ibv_wc ring[CQ_DEPTH]; };
struct segment {
    pthread_mutex_t lock;
    uint32_t next_key;
    struct s_mr mr[MAX_MR];
    struct s_qp qp[MAX_QP];
    struct s_cq cq[MAX_CQ];
};

static struct segment *own;
static pthread_mutex_t local_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { int pid; struct segment *segment; } peers[64];
static int peer_count;

static void lock(struct segment *s) {
    int rc = pthread_mutex_lock(&s->lock);
    if (rc == EOWNERDEAD) pthread_mutex_consistent(&s->lock);
}
static void unlock(struct segment *s) { pthread_mutex_unlock(&s->lock); }

static void remove_own_segment(void) {
    char name[64];
    snprintf(name, sizeof name, "/lsfab-%d", getpid());
    shm_unlink(name);
}

// Segments of processes that died without cleaning up are removed when a new one starts.
static void remove_stale_segments(void) {
    DIR *d = opendir("/dev/shm");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        if (sscanf(e->d_name, "lsfab-%d", &pid) == 1 && kill(pid, 0) != 0 && errno == ESRCH) {
            char name[300];
            snprintf(name, sizeof name, "/%s", e->d_name);
            shm_unlink(name);
        }
    }
    closedir(d);
}

static void ensure_segment(void) {
    if (own) return;
    remove_stale_segments();
    char name[64];
    snprintf(name, sizeof name, "/lsfab-%d", getpid());
    int fd = shm_open(name, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, sizeof(struct segment))) die("cannot create %s: %s", name, strerror(errno));
    own = mmap(NULL, sizeof(struct segment), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&own->lock, &a);
    own->next_key = (uint32_t)getpid() << 8;
    atexit(remove_own_segment);
}

static struct segment *segment_of(int pid) {
    if (pid == getpid()) return own;
    pthread_mutex_lock(&local_lock);
    for (int i = 0; i < peer_count; i++)
        if (peers[i].pid == pid) {
            pthread_mutex_unlock(&local_lock);
            return peers[i].segment;
        }
    char name[64];
    snprintf(name, sizeof name, "/lsfab-%d", pid);
    int fd = shm_open(name, O_RDWR, 0600);
    struct segment *s = NULL;
    if (fd >= 0) {
        s = mmap(NULL, sizeof(struct segment), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (s == MAP_FAILED) s = NULL;
    }
    if (s && peer_count < 64) peers[peer_count++] = (typeof(peers[0])){pid, s};
    pthread_mutex_unlock(&local_lock);
    return s;
}

static void notify(const char *channel) {
    if (!channel[1]) return;  // abstract names start with a NUL; none set: no channel
    static int sender = -1;
    if (sender < 0) sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un to = {.sun_family = AF_UNIX};
    memcpy(to.sun_path, channel, 64);
    char byte = 1;
    sendto(sender, &byte, 1, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof to);
}

// Pushes a completion into a queue (its segment locked by the caller). Returns whether the
// queue's channel must be told (after unlocking).
static int push_completion(struct s_cq *cq, const struct ibv_wc *wc, char channel[64]) {
    if (cq->tail - cq->head >= CQ_DEPTH) die("completion queue overrun (more than %d entries)", CQ_DEPTH);
    cq->ring[cq->tail % CQ_DEPTH] = *wc;
    cq->tail++;
    if (cq->armed) {
        cq->armed = 0;
        memcpy(channel, cq->channel, 64);
        return 1;
    }
    return 0;
}

// ---- process-local objects ----

struct e_channel { struct ibv_comp_channel channel; char name[64]; struct ibv_cq *cq; };
struct e_cq { struct ibv_cq cq; int index; };
struct e_qp { struct ibv_qp qp; int index; int peer_pid; uint32_t peer_qpn; int error; int sq_sig_all; };
struct e_mr { struct ibv_mr mr; int index; };

static struct ibv_device device;
static struct ibv_device *device_list[2];
static struct ibv_context *context;
static int channel_counter;

static void bind_abstract(int fd, char name[64], const char *kind) {
    memset(name, 0, 64);
    snprintf(name + 1, 63, "lsfab-%s-%d-%d", kind, getpid(), __atomic_add_fetch(&channel_counter, 1, __ATOMIC_SEQ_CST));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, name, 64);
    if (bind(fd, (struct sockaddr *)&a, sizeof a)) die("bind %s: %s", name + 1, strerror(errno));
}

// ---- work requests ----

struct work {
    struct e_qp *qp;
    struct ibv_send_wr wr;
    struct ibv_sge sge[4];
    struct timespec due;
    struct work *next;
};

static long fault_at = -1;
static int fault_kind;  // 1 rkey, 2 rnr, 3 silent
static int fallen_silent;
static long imm_writes;

static void complete_locally(struct e_qp *qp, uint64_t wr_id, int status, int opcode, uint32_t len) {
    struct ibv_wc wc = {0};
    wc.wr_id = wr_id;
    wc.status = status;
    wc.opcode = opcode;
    wc.byte_len = len;
    wc.qp_num = qp->qp.qp_num;
    char channel[64];
    lock(own);
    int tell = push_completion(&own->cq[((struct e_cq *)qp->qp.send_cq)->index], &wc, channel);
    unlock(own);
    if (tell) notify(channel);
}

static struct s_mr *find_mr(struct segment *s, uint32_t key, uint64_t addr, uint64_t len, int access) {
    for (int i = 0; i < MAX_MR; i++) {
        struct s_mr *m = &s->mr[i];
        if (m->used && m->key == key && addr >= m->addr && addr + len <= m->addr + m->length &&
            (m->access & access) == access)
            return m;
    }
    return NULL;
}

static void execute(struct e_qp *qp, struct ibv_send_wr *wr) {
    int opcode = wr->opcode == IBV_WR_SEND || wr->opcode == IBV_WR_SEND_WITH_IMM ? IBV_WC_SEND : IBV_WC_RDMA_WRITE;
    int signaled = (wr->send_flags & IBV_SEND_SIGNALED) || qp->sq_sig_all;
    if (qp->error) {
        complete_locally(qp, wr->wr_id, IBV_WC_WR_FLUSH_ERR, opcode, 0);
        return;
    }
    struct iovec local[4];
    uint64_t total = 0;
    if (wr->num_sge > 4) die("more than 4 scatter/gather entries");
    for (int i = 0; i < wr->num_sge; i++) {
        lock(own);
        struct s_mr *m = find_mr(own, wr->sg_list[i].lkey, wr->sg_list[i].addr, wr->sg_list[i].length, 0);
        unlock(own);
        if (!m) {
            qp->error = 1;
            complete_locally(qp, wr->wr_id, IBV_WC_LOC_PROT_ERR, opcode, 0);
            return;
        }
        local[i] = (struct iovec){(void *)(uintptr_t)wr->sg_list[i].addr, wr->sg_list[i].length};
        total += wr->sg_list[i].length;
    }
    int with_imm = wr->opcode == IBV_WR_RDMA_WRITE_WITH_IMM || wr->opcode == IBV_WR_SEND_WITH_IMM;
    int consumes = with_imm || wr->opcode == IBV_WR_SEND;
    int injected = 0;
    if (with_imm && fault_at > 0 && ++imm_writes >= fault_at) injected = fault_kind;
    // A peer that stops answering: from then on nothing this process posts is placed or
    // completes, on either side (what rxe does for a dead peer: no completion at all).
    if (injected == 3) __atomic_store_n(&fallen_silent, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&fallen_silent, __ATOMIC_SEQ_CST)) return;
    struct segment *peer = segment_of(qp->peer_pid);
    int status = IBV_WC_SUCCESS;
    char channel[64];
    int tell = 0;
    if (!peer || kill(qp->peer_pid, 0) != 0) {
        status = IBV_WC_RETRY_EXC_ERR;
    } else {
        lock(peer);
        struct s_qp *target = NULL;
        for (int i = 0; i < MAX_QP; i++)
            if (peer->qp[i].used && peer->qp[i].qpn == qp->peer_qpn) target = &peer->qp[i];
        struct iovec remote = {0};
        if (!target || target->state == IBV_QPS_ERR) {
            status = IBV_WC_RETRY_EXC_ERR;
        } else if (wr->opcode == IBV_WR_RDMA_WRITE || wr->opcode == IBV_WR_RDMA_WRITE_WITH_IMM) {
            if (injected == 1 || !find_mr(peer, wr->wr.rdma.rkey, wr->wr.rdma.remote_addr, total, IBV_ACCESS_REMOTE_WRITE))
                status = IBV_WC_REM_ACCESS_ERR;
            remote = (struct iovec){(void *)(uintptr_t)wr->wr.rdma.remote_addr, total};
        }
        if (status == IBV_WC_SUCCESS && consumes && (injected == 2 || target->head == target->tail))
            status = IBV_WC_RNR_RETRY_EXC_ERR;
        struct s_rq receive = {0};
        if (status == IBV_WC_SUCCESS && consumes) {
            receive = target->rq[target->head % RQ_DEPTH];
            if (wr->opcode != IBV_WR_RDMA_WRITE_WITH_IMM) {
                if (total > receive.length || (total && !find_mr(peer, receive.lkey, receive.addr, total, IBV_ACCESS_LOCAL_WRITE)))
                    status = IBV_WC_REM_INV_REQ_ERR;
                remote = (struct iovec){(void *)(uintptr_t)receive.addr, total};
            }
        }
        if (status == IBV_WC_SUCCESS && total) {
            ssize_t done = process_vm_writev(qp->peer_pid, local, wr->num_sge, &remote, 1, 0);
            if (done != (ssize_t)total) status = errno == ESRCH ? IBV_WC_RETRY_EXC_ERR : IBV_WC_REM_ACCESS_ERR;
        }
        if (status == IBV_WC_SUCCESS && consumes) {
            target->head++;
            struct ibv_wc wc = {0};
            wc.wr_id = receive.wr_id;
            wc.status = IBV_WC_SUCCESS;
            wc.opcode = wr->opcode == IBV_WR_RDMA_WRITE_WITH_IMM ? IBV_WC_RECV_RDMA_WITH_IMM : IBV_WC_RECV;
            wc.byte_len = (uint32_t)total;
            wc.imm_data = wr->imm_data;
            wc.wc_flags = with_imm ? IBV_WC_WITH_IMM : 0;
            wc.qp_num = target->qpn;
            tell = push_completion(&peer->cq[target->cq], &wc, channel);
        }
        unlock(peer);
    }
    if (tell) notify(channel);
    if (status != IBV_WC_SUCCESS) qp->error = 1;
    if (signaled || status != IBV_WC_SUCCESS) complete_locally(qp, wr->wr_id, status, opcode, (uint32_t)total);
}

// The asynchronous mode's queue and thread.
static long delay_us = -1;
static struct work *queue_head, *queue_tail;
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static struct timespec last_due;

static void *fabric_thread(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        while (!queue_head) pthread_cond_wait(&queue_ready, &queue_lock);
        struct work *w = queue_head;
        pthread_mutex_unlock(&queue_lock);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &w->due, NULL);
        execute(w->qp, &w->wr);
        pthread_mutex_lock(&queue_lock);
        queue_head = w->next;
        if (!queue_head) queue_tail = NULL;
        pthread_mutex_unlock(&queue_lock);
        free(w);
    }
    return NULL;
}

static void read_modes(void) {
    if (delay_us >= 0) return;
    const char *d = getenv("LOCKSTEP_EMULATED_RDMA_DELAY_US");
    delay_us = d ? atol(d) : 0;
    if (delay_us > 0) {
        pthread_t t;
        pthread_create(&t, NULL, fabric_thread, NULL);
        pthread_detach(t);
        srand((unsigned)getpid());
    }
    const char *f = getenv("LOCKSTEP_EMULATED_RDMA_FAULT");
    if (f) {
        if (sscanf(f, "rkey@%ld", &fault_at) == 1) fault_kind = 1;
        else if (sscanf(f, "rnr@%ld", &fault_at) == 1) fault_kind = 2;
        else if (sscanf(f, "silent@%ld", &fault_at) == 1) fault_kind = 3;
        else die("LOCKSTEP_EMULATED_RDMA_FAULT=%s: expected rkey@K, rnr@K or silent@K", f);
    }
}

static int post_send(struct ibv_qp *ibqp, struct ibv_send_wr *wr, struct ibv_send_wr **bad) {
    struct e_qp *qp = (struct e_qp *)ibqp;
    for (; wr; wr = wr->next) {
        if (wr->opcode != IBV_WR_RDMA_WRITE && wr->opcode != IBV_WR_RDMA_WRITE_WITH_IMM && wr->opcode != IBV_WR_SEND &&
            wr->opcode != IBV_WR_SEND_WITH_IMM)
            die("opcode %d is not emulated", wr->opcode);
        if (delay_us <= 0) {
            execute(qp, wr);
            continue;
        }
        struct work *w = calloc(1, sizeof *w);
        w->qp = qp;
        w->wr = *wr;
        w->wr.next = NULL;
        if (wr->num_sge > 4) die("more than 4 scatter/gather entries");
        memcpy(w->sge, wr->sg_list, sizeof(struct ibv_sge) * wr->num_sge);
        w->wr.sg_list = w->sge;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long add = rand() % (delay_us + 1);
        now.tv_nsec += add * 1000;
        while (now.tv_nsec >= 1000000000) { now.tv_nsec -= 1000000000; now.tv_sec++; }
        pthread_mutex_lock(&queue_lock);
        if (now.tv_sec < last_due.tv_sec || (now.tv_sec == last_due.tv_sec && now.tv_nsec < last_due.tv_nsec)) now = last_due;
        w->due = last_due = now;
        if (queue_tail) queue_tail->next = w; else queue_head = w;
        queue_tail = w;
        pthread_cond_signal(&queue_ready);
        pthread_mutex_unlock(&queue_lock);
    }
    (void)bad;
    return 0;
}

static int post_recv(struct ibv_qp *ibqp, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad) {
    struct e_qp *qp = (struct e_qp *)ibqp;
    lock(own);
    struct s_qp *s = &own->qp[qp->index];
    for (; wr; wr = wr->next) {
        if (s->tail - s->head >= RQ_DEPTH) {
            unlock(own);
            *bad = wr;
            return ENOMEM;
        }
        struct s_rq r = {wr->wr_id, 0, 0, 0};
        if (wr->num_sge > 1) die("receives with more than one scatter/gather entry are not emulated");
        if (wr->num_sge == 1) r = (struct s_rq){wr->wr_id, wr->sg_list[0].addr, wr->sg_list[0].length, wr->sg_list[0].lkey};
        s->rq[s->tail % RQ_DEPTH] = r;
        s->tail++;
    }
    unlock(own);
    return 0;
}

static int poll_cq(struct ibv_cq *ibcq, int n, struct ibv_wc *wc) {
    struct s_cq *cq = &own->cq[((struct e_cq *)ibcq)->index];
    lock(own);
    int got = 0;
    while (got < n && cq->head != cq->tail) wc[got++] = cq->ring[cq->head++ % CQ_DEPTH];
    unlock(own);
    return got;
}

static int req_notify_cq(struct ibv_cq *ibcq, int solicited_only) {
    (void)solicited_only;
    lock(own);
    own->cq[((struct e_cq *)ibcq)->index].armed = 1;
    unlock(own);
    return 0;
}

// ---- verbs entry points ----

struct ibv_device **ibv_get_device_list(int *n) {
    snprintf(device.name, sizeof device.name, "emulated");
    snprintf(device.dev_name, sizeof device.dev_name, "uverbs-emulated");
    device.node_type = IBV_NODE_CA;
    device.transport_type = IBV_TRANSPORT_IB;
    device_list[0] = &device;
    device_list[1] = NULL;
    if (n) *n = 1;
    return device_list;
}
void ibv_free_device_list(struct ibv_device **list) { (void)list; }
const char *ibv_get_device_name(struct ibv_device *d) { return d->name; }

struct ibv_context *ibv_open_device(struct ibv_device *d) {
    pthread_mutex_lock(&local_lock);
    if (!context) {
        ensure_segment();
        read_modes();
        context = calloc(1, sizeof *context);
        context->device = d;
        context->ops.post_send = post_send;
        context->ops.post_recv = post_recv;
        context->ops.poll_cq = poll_cq;
        context->ops.req_notify_cq = req_notify_cq;
        context->cmd_fd = -1;
        context->async_fd = -1;
        context->num_comp_vectors = 1;
    }
    pthread_mutex_unlock(&local_lock);
    return context;
}
int ibv_close_device(struct ibv_context *c) { (void)c; return 0; }

struct ibv_pd *ibv_alloc_pd(struct ibv_context *c) {
    struct ibv_pd *pd = calloc(1, sizeof *pd);
    pd->context = c;
    return pd;
}
int ibv_dealloc_pd(struct ibv_pd *pd) { free(pd); return 0; }

#undef ibv_reg_mr
struct ibv_mr *ibv_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access) {
    lock(own);
    int i = 0;
    while (i < MAX_MR && own->mr[i].used) i++;
    if (i == MAX_MR) { unlock(own); errno = ENOMEM; return NULL; }
    uint32_t key = ++own->next_key;
    own->mr[i] = (struct s_mr){1, key, (uint64_t)(uintptr_t)addr, length, access | 0x80000000};
    unlock(own);
    struct e_mr *m = calloc(1, sizeof *m);
    m->index = i;
    m->mr = (struct ibv_mr){pd->context, pd, addr, length, 0, key, key};
    return &m->mr;
}
// find_mr with access 0 matches any registration; local writes need IBV_ACCESS_LOCAL_WRITE.
struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova, unsigned int access) {
    if (iova != (uint64_t)(uintptr_t)addr) die("ibv_reg_mr_iova2 with an iova other than the address");
    return ibv_reg_mr(pd, addr, length, (int)access);
}
int ibv_dereg_mr(struct ibv_mr *mr) {
    struct e_mr *m = (struct e_mr *)mr;
    lock(own);
    own->mr[m->index].used = 0;
    unlock(own);
    free(m);
    return 0;
}

struct ibv_comp_channel *ibv_create_comp_channel(struct ibv_context *c) {
    struct e_channel *ch = calloc(1, sizeof *ch);
    ch->channel.context = c;
    ch->channel.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bind_abstract(ch->channel.fd, ch->name, "cc");
    return &ch->channel;
}
int ibv_destroy_comp_channel(struct ibv_comp_channel *channel) {
    close(channel->fd);
    free(channel);
    return 0;
}

struct ibv_cq *ibv_create_cq(struct ibv_context *c, int cqe, void *cq_context, struct ibv_comp_channel *channel, int vector) {
    (void)vector;
    if (cqe > CQ_DEPTH) { errno = EINVAL; return NULL; }
    lock(own);
    int i = 0;
    while (i < MAX_CQ && own->cq[i].used) i++;
    if (i == MAX_CQ) { unlock(own); errno = ENOMEM; return NULL; }
    struct s_cq *s = &own->cq[i];
    s->used = 1;
    s->armed = 0;
    s->head = s->tail = 0;
    memset(s->channel, 0, 64);
    if (channel) memcpy(s->channel, ((struct e_channel *)channel)->name, 64);
    unlock(own);
    struct e_cq *cq = calloc(1, sizeof *cq);
    cq->index = i;
    cq->cq.context = c;
    cq->cq.channel = channel;
    cq->cq.cq_context = cq_context;
    cq->cq.cqe = cqe;
    if (channel) ((struct e_channel *)channel)->cq = &cq->cq;
    return &cq->cq;
}
int ibv_destroy_cq(struct ibv_cq *ibcq) {
    lock(own);
    own->cq[((struct e_cq *)ibcq)->index].used = 0;
    unlock(own);
    free(ibcq);
    return 0;
}

int ibv_get_cq_event(struct ibv_comp_channel *channel, struct ibv_cq **cq, void **cq_context) {
    char byte;
    if (recv(channel->fd, &byte, 1, 0) != 1) return -1;
    *cq = ((struct e_channel *)channel)->cq;
    *cq_context = (*cq)->cq_context;
    return 0;
}
void ibv_ack_cq_events(struct ibv_cq *cq, unsigned int n) { (void)cq; (void)n; }

static struct e_qp *create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr) {
    if (attr->qp_type != IBV_QPT_RC) die("only RC queue pairs are emulated");
    if (attr->cap.max_recv_wr > RQ_DEPTH) { errno = EINVAL; return NULL; }
    lock(own);
    int i = 0;
    while (i < MAX_QP && own->qp[i].used) i++;
    if (i == MAX_QP) { unlock(own); errno = ENOMEM; return NULL; }
    struct s_qp *s = &own->qp[i];
    s->used = 1;
    s->qpn = (uint32_t)(getpid() & 0xffff) << 8 | (uint32_t)i;
    s->state = IBV_QPS_INIT;
    s->cq = ((struct e_cq *)attr->recv_cq)->index;
    s->head = s->tail = 0;
    unlock(own);
    struct e_qp *qp = calloc(1, sizeof *qp);
    qp->index = i;
    qp->qp.context = pd->context;
    qp->qp.pd = pd;
    qp->qp.send_cq = attr->send_cq;
    qp->qp.recv_cq = attr->recv_cq;
    qp->qp.qp_num = s->qpn;
    qp->qp.qp_type = IBV_QPT_RC;
    qp->qp.state = IBV_QPS_INIT;
    qp->sq_sig_all = attr->sq_sig_all;
    return qp;
}
struct ibv_qp *ibv_create_qp(struct ibv_pd *pd, struct ibv_qp_init_attr *attr) {
    struct e_qp *qp = create_qp(pd, attr);
    return qp ? &qp->qp : NULL;
}
static void set_qp_state(struct e_qp *qp, int state) {
    lock(own);
    own->qp[qp->index].state = state;
    unlock(own);
    qp->qp.state = state;
    if (state == IBV_QPS_ERR) qp->error = 1;
}
int ibv_destroy_qp(struct ibv_qp *ibqp) {
    struct e_qp *qp = (struct e_qp *)ibqp;
    lock(own);
    own->qp[qp->index].used = 0;
    unlock(own);
    // Work requests of the asynchronous mode may still name it: kept (a few bytes) rather than freed.
    qp->error = 1;
    return 0;
}

const char *ibv_wc_status_str(enum ibv_wc_status status) {
    switch (status) {
    case IBV_WC_SUCCESS: return "success";
    case IBV_WC_LOC_PROT_ERR: return "local protection error";
    case IBV_WC_WR_FLUSH_ERR: return "Work Request Flushed Error";
    case IBV_WC_REM_ACCESS_ERR: return "remote access error";
    case IBV_WC_REM_INV_REQ_ERR: return "remote invalid request error";
    case IBV_WC_RETRY_EXC_ERR: return "transport retry counter exceeded";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "RNR retry counter exceeded";
    default: return "other error";
    }
}

// Entry points of the verbs API that Lockstep does not use abort loudly: not_emulated.c.

// ---- rdma_cm ----

enum { M_CONNECT = 1, M_ACCEPT, M_REJECT, M_DISCONNECT, M_SELF };
struct cm_message {
    int type, event, status, pid;
    uint64_t target, from;
    uint32_t qpn;
    char from_channel[64];
    uint8_t private_len;
    uint8_t private_data[196];
};

struct e_event_channel { struct rdma_event_channel channel; char name[64]; };
struct e_id {
    struct rdma_cm_id id;
    char destination[64];      // "ip-port" for connect
    int peer_pid;
    uint32_t peer_qpn;
    uint64_t peer_token;
    char peer_channel[64];
    int connected;
    int listening;
};
struct e_event { struct rdma_cm_event event; uint8_t private_data[196]; };

// Ids alive in this process: events for an id destroyed meanwhile are dropped, as rdma_cm does.
static struct e_id *live_ids[1024];
static void id_born(struct e_id *id) {
    pthread_mutex_lock(&local_lock);
    for (int i = 0; i < 1024; i++)
        if (!live_ids[i]) { live_ids[i] = id; break; }
    pthread_mutex_unlock(&local_lock);
}
static void id_died(struct e_id *id) {
    pthread_mutex_lock(&local_lock);
    for (int i = 0; i < 1024; i++)
        if (live_ids[i] == id) live_ids[i] = NULL;
    pthread_mutex_unlock(&local_lock);
}
static int id_alive(struct e_id *id) {
    int alive = 0;
    pthread_mutex_lock(&local_lock);
    for (int i = 0; i < 1024 && !alive; i++) alive = live_ids[i] == id;
    pthread_mutex_unlock(&local_lock);
    return alive;
}

static void send_message(const char *channel, struct cm_message *m, int *error) {
    static int sender = -1;
    if (sender < 0) sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un to = {.sun_family = AF_UNIX};
    memcpy(to.sun_path, channel, 64);
    int rc = (int)sendto(sender, m, sizeof *m, 0, (struct sockaddr *)&to, sizeof to);
    if (error) *error = rc < 0 ? errno : 0;
}

static void self_event(struct e_id *id, int event, int status) {
    struct cm_message m = {0};
    m.type = M_SELF;
    m.event = event;
    m.status = status;
    m.target = (uint64_t)(uintptr_t)id;
    send_message(((struct e_event_channel *)id->id.channel)->name, &m, NULL);
}

struct rdma_event_channel *rdma_create_event_channel(void) {
    struct e_event_channel *ch = calloc(1, sizeof *ch);
    ch->channel.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bind_abstract(ch->channel.fd, ch->name, "cm");
    return &ch->channel;
}
void rdma_destroy_event_channel(struct rdma_event_channel *channel) {
    close(channel->fd);
    free(channel);
}

int rdma_create_id(struct rdma_event_channel *channel, struct rdma_cm_id **id, void *user, enum rdma_port_space ps) {
    struct e_id *e = calloc(1, sizeof *e);
    e->id.channel = channel;
    e->id.context = user;
    e->id.ps = ps;
    *id = &e->id;
    id_born(e);
    return 0;
}
int rdma_destroy_id(struct rdma_cm_id *id) {
    struct e_id *e = (struct e_id *)id;
    if (e->listening) {
        char path[128];
        snprintf(path, sizeof path, "/dev/shm/lsfab-listen-%s", e->destination);
        unlink(path);
    }
    id_died(e);
    free(id);
    return 0;
}

static void address_key(const struct sockaddr *a, char *out, size_t n) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)a;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
    snprintf(out, n, "%s-%d", ip, ntohs(in->sin_port));
}

static struct ibv_context *the_context(void) { return ibv_open_device(ibv_get_device_list(NULL)[0]); }

int rdma_bind_addr(struct rdma_cm_id *id, struct sockaddr *address) {
    if (address->sa_family != AF_INET) { errno = EAFNOSUPPORT; return -1; }
    address_key(address, ((struct e_id *)id)->destination, 64);
    id->verbs = the_context();
    return 0;
}

int rdma_listen(struct rdma_cm_id *id, int backlog) {
    (void)backlog;
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/lsfab-listen-%s", ((struct e_id *)id)->destination);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    struct e_event_channel *ch = (struct e_event_channel *)id->channel;
    fprintf(f, "%s %llu\n", ch->name + 1, (unsigned long long)(uintptr_t)id);
    fclose(f);
    ((struct e_id *)id)->listening = 1;
    return 0;
}

int rdma_resolve_addr(struct rdma_cm_id *id, struct sockaddr *src, struct sockaddr *dst, int timeout_ms) {
    (void)src; (void)timeout_ms;
    if (dst->sa_family != AF_INET) { errno = EAFNOSUPPORT; return -1; }
    address_key(dst, ((struct e_id *)id)->destination, 64);
    id->verbs = the_context();
    self_event((struct e_id *)id, RDMA_CM_EVENT_ADDR_RESOLVED, 0);
    return 0;
}
int rdma_resolve_route(struct rdma_cm_id *id, int timeout_ms) {
    (void)timeout_ms;
    self_event((struct e_id *)id, RDMA_CM_EVENT_ROUTE_RESOLVED, 0);
    return 0;
}

int rdma_create_qp(struct rdma_cm_id *id, struct ibv_pd *pd, struct ibv_qp_init_attr *attr) {
    struct e_qp *qp = create_qp(pd, attr);
    if (!qp) return -1;
    id->qp = &qp->qp;
    id->pd = pd;
    return 0;
}
void rdma_destroy_qp(struct rdma_cm_id *id) {
    if (id->qp) ibv_destroy_qp(id->qp);
    id->qp = NULL;
}

static void fill_message(struct cm_message *m, int type, struct e_id *id, struct rdma_conn_param *param) {
    memset(m, 0, sizeof *m);
    m->type = type;
    m->pid = getpid();
    m->from = (uint64_t)(uintptr_t)id;
    m->qpn = id->id.qp ? id->id.qp->qp_num : 0;
    memcpy(m->from_channel, ((struct e_event_channel *)id->id.channel)->name, 64);
    if (param && param->private_data_len) {
        m->private_len = param->private_data_len;
        memcpy(m->private_data, param->private_data, param->private_data_len);
    }
}

static void connect_qp(struct e_id *id) {
    struct e_qp *qp = (struct e_qp *)id->id.qp;
    qp->peer_pid = id->peer_pid;
    qp->peer_qpn = id->peer_qpn;
    set_qp_state(qp, IBV_QPS_RTS);
    id->connected = 1;
}

int rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *param) {
    struct e_id *e = (struct e_id *)id;
    char path[128], name[64] = {0};
    unsigned long long token = 0;
    snprintf(path, sizeof path, "/dev/shm/lsfab-listen-%s", e->destination);
    FILE *f = fopen(path, "r");
    int found = f && fscanf(f, "%62s %llu", name + 1, &token) == 2;
    if (f) fclose(f);
    int error = ECONNREFUSED;
    if (found) {
        struct cm_message m;
        fill_message(&m, M_CONNECT, e, param);
        m.target = token;
        send_message(name, &m, &error);
    }
    // Nobody listens there: rdma_cm reports a rejection (status 28, as on a real fabric).
    if (error) self_event(e, RDMA_CM_EVENT_REJECTED, 28);
    return 0;
}

int rdma_accept(struct rdma_cm_id *id, struct rdma_conn_param *param) {
    struct e_id *e = (struct e_id *)id;
    connect_qp(e);
    struct cm_message m;
    fill_message(&m, M_ACCEPT, e, param);
    m.target = e->peer_token;
    int error;
    send_message(e->peer_channel, &m, &error);
    self_event(e, error ? RDMA_CM_EVENT_CONNECT_ERROR : RDMA_CM_EVENT_ESTABLISHED, error);
    return 0;
}

int rdma_reject(struct rdma_cm_id *id, const void *data, uint8_t length) {
    struct e_id *e = (struct e_id *)id;
    struct cm_message m;
    fill_message(&m, M_REJECT, e, NULL);
    m.target = e->peer_token;
    if (length) { m.private_len = length; memcpy(m.private_data, data, length); }
    send_message(e->peer_channel, &m, NULL);
    return 0;
}

int rdma_disconnect(struct rdma_cm_id *id) {
    struct e_id *e = (struct e_id *)id;
    if (!e->connected) return 0;
    e->connected = 0;
    if (id->qp) set_qp_state((struct e_qp *)id->qp, IBV_QPS_ERR);
    struct cm_message m;
    fill_message(&m, M_DISCONNECT, e, NULL);
    m.target = e->peer_token;
    send_message(e->peer_channel, &m, NULL);
    self_event(e, RDMA_CM_EVENT_DISCONNECTED, 0);
    return 0;
}

int rdma_get_cm_event(struct rdma_event_channel *channel, struct rdma_cm_event **out) {
    struct cm_message m;
    struct e_id *target;
    do {
        ssize_t got = recv(channel->fd, &m, sizeof m, 0);
        if (got != sizeof m) return -1;  // errno is EAGAIN on a non-blocking channel
        target = (struct e_id *)(uintptr_t)m.target;
    } while (!id_alive(target));
    struct e_event *ev = calloc(1, sizeof *ev);
    ev->event.status = m.status;
    memcpy(ev->private_data, m.private_data, m.private_len);
    ev->event.param.conn.private_data = ev->private_data;
    ev->event.param.conn.private_data_len = m.private_len;
    switch (m.type) {
    case M_SELF:
        ev->event.id = &target->id;
        ev->event.event = m.event;
        break;
    case M_CONNECT: {
        struct e_id *id;
        rdma_create_id(channel, (struct rdma_cm_id **)&id, NULL, target->id.ps);
        id->id.verbs = the_context();
        id->peer_pid = m.pid;
        id->peer_qpn = m.qpn;
        id->peer_token = m.from;
        memcpy(id->peer_channel, m.from_channel, 64);
        ev->event.id = &id->id;
        ev->event.listen_id = &target->id;
        ev->event.event = RDMA_CM_EVENT_CONNECT_REQUEST;
        break;
    }
    case M_ACCEPT:
        target->peer_pid = m.pid;
        target->peer_qpn = m.qpn;
        target->peer_token = m.from;
        memcpy(target->peer_channel, m.from_channel, 64);
        connect_qp(target);
        ev->event.id = &target->id;
        ev->event.event = RDMA_CM_EVENT_ESTABLISHED;
        break;
    case M_REJECT:
        ev->event.id = &target->id;
        ev->event.event = RDMA_CM_EVENT_REJECTED;
        ev->event.status = 28;
        break;
    case M_DISCONNECT:
        target->connected = 0;
        if (target->id.qp) set_qp_state((struct e_qp *)target->id.qp, IBV_QPS_ERR);
        ev->event.id = &target->id;
        ev->event.event = RDMA_CM_EVENT_DISCONNECTED;
        break;
    default:
        die("unknown connection message %d", m.type);
    }
    *out = &ev->event;
    return 0;
}

int rdma_ack_cm_event(struct rdma_cm_event *event) {
    free(event);
    return 0;
}

const char *rdma_event_str(enum rdma_cm_event_type event) {
    static const char *names[] = {"RDMA_CM_EVENT_ADDR_RESOLVED", "RDMA_CM_EVENT_ADDR_ERROR",
        "RDMA_CM_EVENT_ROUTE_RESOLVED", "RDMA_CM_EVENT_ROUTE_ERROR", "RDMA_CM_EVENT_CONNECT_REQUEST",
        "RDMA_CM_EVENT_CONNECT_RESPONSE", "RDMA_CM_EVENT_CONNECT_ERROR", "RDMA_CM_EVENT_UNREACHABLE",
        "RDMA_CM_EVENT_REJECTED", "RDMA_CM_EVENT_ESTABLISHED", "RDMA_CM_EVENT_DISCONNECTED",
        "RDMA_CM_EVENT_DEVICE_REMOVAL"};
    return (unsigned)event < sizeof names / sizeof names[0] ? names[event] : "RDMA_CM_EVENT_OTHER";
}
