#ifndef CAPSTAN_HEAP_STATS_H
#define CAPSTAN_HEAP_STATS_H

#include <stdint.h>

/// Bytes glibc's malloc has handed out and not yet got back (mallinfo2: uordblks + hblkhd), over
/// all arenas. Includes malloc's own per-chunk overhead; 0 where mallinfo2 is unavailable.
int64_t capstan_heap_in_use(void);

/// Returns free heap memory to the system (glibc malloc_trim(0)), so that resident memory tracks
/// live data. Does nothing elsewhere.
void capstan_heap_trim(void);

/// Whether ordo-one's malloc interposer (libMallocInterposerSwift, LD_PRELOADed by the benchmark
/// plugin) is loaded. It adds a 16-byte header to every allocation.
int capstan_interposer_present(void);

/// Starts counting allocations and frees with the interposer (zeroing its counters). No-op
/// without the interposer.
void capstan_interposer_start(void);

/// Stops counting; stores allocations minus frees since `capstan_interposer_start` in
/// `net_count` and requested bytes allocated minus freed in `net_bytes` (0 without the interposer).
void capstan_interposer_stop(int64_t *net_count, int64_t *net_bytes);

#endif
