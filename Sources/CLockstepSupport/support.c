#include "lockstep_support.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

int lockstep_set_mmap_threshold(int bytes) {
#if defined(__GLIBC__)
    // Keep freed memory at the top of the heap too (up to 4x the threshold), or the next large
    // buffer faults in fresh zeroed pages again.
    return mallopt(M_MMAP_THRESHOLD, bytes) && mallopt(M_TRIM_THRESHOLD, bytes * 4);
#else
    (void)bytes;
    return 0;
#endif
}
