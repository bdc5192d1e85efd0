/* Guest-side block I/O load for bench/disk: one thread, queue depth 1, O_DIRECT so the guest's
 * page cache never answers for the device. Runs MODE for SECONDS and prints one line:
 *   BENCH <mode> bs=<bytes> ops=<n> MBps=<x> iops=<y>
 * Built statically by bench/disk/run.sh and put into the benchmark initramfs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t xorshift(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: blkio DEV seqread|seqwrite|randread|randwrite BS SECONDS SPAN_MB\n");
    return 2;
  }
  const char *dev = argv[1], *mode = argv[2];
  const size_t bs = strtoul(argv[3], NULL, 10);
  const double seconds = atof(argv[4]);
  const uint64_t span = strtoull(argv[5], NULL, 10) << 20;
  const int write = strstr(mode, "write") != NULL, random = strncmp(mode, "rand", 4) == 0;
  if (bs == 0 || bs % 4096 != 0 || span < bs) return 2;
  int fd = open(dev, (write ? O_RDWR : O_RDONLY) | O_DIRECT);
  if (fd < 0) {
    perror(dev);
    return 1;
  }
  void* buf;
  if (posix_memalign(&buf, 4096, bs) != 0) return 1;
  memset(buf, 0x5a, bs);
  const uint64_t blocks = span / bs;
  uint64_t seed = 0x9e3779b97f4a7c15ull, ops = 0, next = 0;
  const double start = now();
  double elapsed = 0;
  do {
    for (int i = 0; i < 16; ++i) {
      const uint64_t block = random ? xorshift(&seed) % blocks : next++ % blocks;
      const off_t off = (off_t)(block * bs);
      const ssize_t n = write ? pwrite(fd, buf, bs, off) : pread(fd, buf, bs, off);
      if (n != (ssize_t)bs) {
        perror(write ? "pwrite" : "pread");
        return 1;
      }
      ++ops;
    }
    elapsed = now() - start;
  } while (elapsed < seconds);
  if (write) fdatasync(fd);
  elapsed = now() - start;
  printf("BENCH %s bs=%zu ops=%llu MBps=%.2f iops=%.1f\n", mode, bs, (unsigned long long)ops,
         (double)ops * (double)bs / elapsed / 1e6, (double)ops / elapsed);
  return 0;
}
