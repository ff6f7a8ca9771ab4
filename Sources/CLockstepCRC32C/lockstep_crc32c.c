#include "lockstep_crc32c.h"

#include <pthread.h>
#include <string.h>

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
        table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        for (int k = 1; k < 8; k++) table[k][n] = (table[k - 1][n] >> 8) ^ table[0][table[k - 1][n] & 0xFF];
    }
}

uint32_t lockstep_crc32c_software(uint32_t crc, const void *bytes, size_t count) {
    pthread_once(&table_once, build_table);
    const uint8_t *p = bytes;
    crc = ~crc;
    while (count >= 8) {  // slicing by 8
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = table[7][word & 0xFF] ^ table[6][(word >> 8) & 0xFF] ^ table[5][(word >> 16) & 0xFF] ^
              table[4][(word >> 24) & 0xFF] ^ table[3][(word >> 32) & 0xFF] ^ table[2][(word >> 40) & 0xFF] ^
              table[1][(word >> 48) & 0xFF] ^ table[0][word >> 56];
        p += 8;
        count -= 8;
    }
    while (count--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hardware(uint32_t crc, const void *bytes, size_t count) {
    const uint8_t *p = bytes;
    uint64_t value = ~crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        value = __builtin_ia32_crc32di(value, word);
        p += 8;
        count -= 8;
    }
    uint32_t small = (uint32_t)value;
    while (count--) small = __builtin_ia32_crc32qi(small, *p++);
    return ~small;
}
#endif

int lockstep_crc32c_is_hardware(void) {
#if defined(__x86_64__)
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    return 0;
#endif
}

uint32_t lockstep_crc32c(uint32_t crc, const void *bytes, size_t count) {
#if defined(__x86_64__)
    static int hardware = -1;  // -1: not asked yet; racing first callers store the same answer
    int known = __atomic_load_n(&hardware, __ATOMIC_RELAXED);
    if (known < 0) {
        known = lockstep_crc32c_is_hardware();
        __atomic_store_n(&hardware, known, __ATOMIC_RELAXED);
    }
    if (known) return crc32c_hardware(crc, bytes, count);
#endif
    return lockstep_crc32c_software(crc, bytes, count);
}
