// Small C helpers the Swift side cannot reach through Glibc's module map.
#ifndef LOCKSTEP_SUPPORT_H
#define LOCKSTEP_SUPPORT_H

/// Sets glibc's mmap threshold (fixed, which also stops its dynamic adjustment). Returns 1 on
/// success, 0 on failure or where glibc is absent.
int lockstep_set_mmap_threshold(int bytes);

#endif
