/* randread FILE SECONDS [BLOCK]: random O_DIRECT reads of BLOCK (default 4096)
 * bytes at aligned offsets of FILE for SECONDS; prints "ops N seconds S".
 * bench/run builds it static (gcc -static) and copies it into the zones. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: randread FILE SECONDS [BLOCK]\n"); return 2; }
    long bs = argc > 3 ? atol(argv[3]) : 4096;
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) { perror(argv[1]); return 1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < bs) { fprintf(stderr, "%s: too small\n", argv[1]); return 1; }
    void *buf;
    if (posix_memalign(&buf, 4096, bs) != 0) return 1;
    unsigned long long blocks = st.st_size / bs, ops = 0, x = (unsigned long long)getpid() * 2654435761ULL + 1;
    double t0 = now(), end = t0 + atof(argv[2]), t;
    do {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        if (pread(fd, buf, bs, (off_t)((x % blocks) * bs)) != bs) { perror("pread"); return 1; }
        ops++;
    } while ((ops & 15) || (t = now()) < end);
    printf("ops %llu seconds %.3f\n", ops, t - t0);
    return 0;
}
