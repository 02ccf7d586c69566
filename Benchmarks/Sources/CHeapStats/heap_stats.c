#define _GNU_SOURCE
#include "heap_stats.h"

#include <dlfcn.h>
#include <stddef.h>
#if defined(__linux__) && defined(__GLIBC__)
#include <malloc.h>
#endif

int64_t capstan_heap_in_use(void) {
#if defined(__linux__) && defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 info = mallinfo2();
  return (int64_t)(info.uordblks + info.hblkhd);
#else
  return 0;
#endif
}

void capstan_heap_trim(void) {
#if defined(__linux__) && defined(__GLIBC__)
  malloc_trim(0);
#endif
}

typedef void (*interposer_void_fn)(void);
typedef void (*interposer_stats_fn)(int64_t *, int64_t *, int64_t *, int64_t *, int64_t *, int64_t *);

static interposer_void_fn lookup_void(const char *name) {
  return (interposer_void_fn)dlsym(RTLD_DEFAULT, name);
}

int capstan_interposer_present(void) {
  return dlsym(RTLD_DEFAULT, "malloc_interposer_get_stats") != NULL;
}

void capstan_interposer_start(void) {
  interposer_void_fn reset = lookup_void("malloc_interposer_reset");
  interposer_void_fn enable = lookup_void("malloc_interposer_enable");
  if (reset && enable) {
    reset();
    enable();
  }
}

void capstan_interposer_stop(int64_t *net_count, int64_t *net_bytes) {
  *net_count = 0;
  *net_bytes = 0;
  interposer_void_fn disable = lookup_void("malloc_interposer_disable");
  interposer_stats_fn stats = (interposer_stats_fn)dlsym(RTLD_DEFAULT, "malloc_interposer_get_stats");
  if (!disable || !stats) return;
  disable();
  int64_t malloc_count = 0, malloc_bytes = 0, small = 0, large = 0, free_count = 0, free_bytes = 0;
  stats(&malloc_count, &malloc_bytes, &small, &large, &free_count, &free_bytes);
  *net_count = malloc_count - free_count;
  *net_bytes = malloc_bytes - free_bytes;
}
