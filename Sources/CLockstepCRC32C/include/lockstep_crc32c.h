// CRC32C (Castagnoli), the checksum of every record in the durable log. Written here in C because
// Swift has no portable access to the SSE 4.2 crc32 instruction and no well-kept package in reach
// computes CRC32C (swift-crypto and compress-nio have none); the table-driven fallback serves CPUs
// without the instruction.
#ifndef LOCKSTEP_CRC32C_H
#define LOCKSTEP_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends `crc` (0 to start) over `count` bytes at `bytes`.
uint32_t lockstep_crc32c(uint32_t crc, const void *bytes, size_t count);

/// Extends `crc` with the table-driven code, whatever the CPU (tests compare the two).
uint32_t lockstep_crc32c_software(uint32_t crc, const void *bytes, size_t count);

/// 1 when `lockstep_crc32c` uses the CPU's crc32 instruction.
int lockstep_crc32c_is_hardware(void);

#endif
