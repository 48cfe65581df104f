/* statfs: what statfs(2) and fstatfs(2) answer in a zone, one line per
 * call, for tests/host.rs and the escape suite (tests/escape/statfs.rs):
 *
 *   LABEL ok type=0x.. bsize=N frsize=N blocks=N bfree=N bavail=N fsid=X:Y
 *   LABEL err=ENAME
 *
 *   statfs path P...          statfs(P) for each P
 *   statfs fd P...            open(P, O_PATH), then fstatfs
 *   statfs stdin              fstatfs(0): a descriptor from outside the zone
 *   statfs i386 P...          statfs64 and statfs of i386 (int $0x80;
 *                             "unsupported" without IA32 emulation)
 *   statfs bad P              bad pointers: a NULL path, a NULL buffer, an
 *                             unmapped one, a read-only one, a path running
 *                             into an unmapped page, a path too long
 *   statfs race A B N         one thread flips a path buffer between A
 *                             and B while this one calls statfs N times;
 *                             prints each distinct answer once
 *   statfs flood SECS THREADS statfs("/") in loops; prints "calls N"
 *   statfs bench N            N statfs("/") calls, then N fstatfs, then N
 *                             sysinfo (the same round trip to the monitor
 *                             with less to do): ns per call
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

static void print(const char *label, long r, const struct statfs *s)
{
	if (r != 0) {
		printf("%s err=%s\n", label, strerrorname_np(errno));
	} else {
		unsigned *fsid = (unsigned *)&s->f_fsid;
		printf("%s ok type=0x%lx bsize=%ld frsize=%ld blocks=%lu bfree=%lu bavail=%lu fsid=%x:%x\n", label,
		       (unsigned long)s->f_type, (long)s->f_bsize, (long)s->f_frsize, (unsigned long)s->f_blocks,
		       (unsigned long)s->f_bfree, (unsigned long)s->f_bavail, fsid[0], fsid[1]);
	}
	fflush(stdout);
}

static long raw_statfs(const char *p, struct statfs *s)
{
	return syscall(SYS_statfs, p, s);
}

#if defined(__x86_64__)
static long int80(long nr, long a, long b, long c)
{
	int ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

/* i386's struct statfs64 (packed to 4 bytes) and struct statfs. */
struct __attribute__((packed, aligned(4))) statfs64_32 {
	uint32_t type, bsize;
	uint64_t blocks, bfree, bavail, files, ffree;
	uint32_t fsid[2], namelen, frsize, flags, spare[4];
};
struct statfs_32 {
	uint32_t type, bsize, blocks, bfree, bavail, files, ffree, fsid[2], namelen, frsize, flags, spare[4];
};

static void i386(const char *p)
{
	/* Below 4 GiB, where an i386 call can point. */
	char *low = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED) {
		printf("%s i386 err=%s\n", p, strerrorname_np(errno));
		return;
	}
	strncpy(low, p, 4095);
	struct statfs64_32 *s64 = (void *)(low + 4096);
	long r = int80(268, (long)low, sizeof *s64, (long)s64);
	if (r < 0)
		printf("%s i386-statfs64 err=%s\n", p, strerrorname_np(-r));
	else
		printf("%s i386-statfs64 ok size=%zu type=0x%x bsize=%u frsize=%u blocks=%llu bfree=%llu bavail=%llu "
		       "fsid=%x:%x\n",
		       p, sizeof *s64, s64->type, s64->bsize, s64->frsize, (unsigned long long)s64->blocks,
		       (unsigned long long)s64->bfree, (unsigned long long)s64->bavail, s64->fsid[0], s64->fsid[1]);
	r = int80(268, (long)low, sizeof *s64 + 4, (long)s64);
	printf("%s i386-statfs64-wrong-size %s\n", p, r < 0 ? strerrorname_np(-r) : "ok");
	struct statfs_32 *s32 = (void *)(low + 4096);
	r = int80(99, (long)low, (long)s32, 0);
	if (r < 0)
		printf("%s i386-statfs err=%s\n", p, strerrorname_np(-r));
	else
		printf("%s i386-statfs ok type=0x%x bsize=%u blocks=%u bfree=%u bavail=%u fsid=%x:%x\n", p, s32->type,
		       s32->bsize, s32->blocks, s32->bfree, s32->bavail, s32->fsid[0], s32->fsid[1]);
	fflush(stdout);
	munmap(low, 8192);
}
#else
static void i386(const char *p)
{
	printf("%s i386 unsupported\n", p);
}
#endif

static volatile int stop;
static char race_buf[4096];
static const char *race_a, *race_b;

static void *flipper(void *arg)
{
	(void)arg;
	for (unsigned long i = 0; !stop; i++) {
		strcpy(race_buf, (i >> 4) & 1 ? race_b : race_a);
		for (volatile int spin = 0; spin < 200; spin++)
			;
	}
	return NULL;
}

static void *flooder(void *arg)
{
	long *calls = arg;
	struct statfs s;
	while (!stop) {
		raw_statfs("/", &s);
		(*calls)++;
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	struct statfs s;
	if (argc < 2)
		return 2;
	const char *mode = argv[1];
	if (!strcmp(mode, "path")) {
		for (int i = 2; i < argc; i++)
			print(argv[i], raw_statfs(argv[i], &s), &s);
	} else if (!strcmp(mode, "fd")) {
		for (int i = 2; i < argc; i++) {
			int fd = open(argv[i], O_PATH | O_CLOEXEC);
			if (fd < 0) {
				printf("%s err=%s\n", argv[i], strerrorname_np(errno));
				continue;
			}
			print(argv[i], syscall(SYS_fstatfs, fd, &s), &s);
			close(fd);
		}
	} else if (!strcmp(mode, "stdin")) {
		print("stdin", syscall(SYS_fstatfs, 0, &s), &s);
	} else if (!strcmp(mode, "i386")) {
		for (int i = 2; i < argc; i++)
			i386(argv[i]);
	} else if (!strcmp(mode, "bad") && argc == 3) {
		const char *p = argv[2];
		print("null-path", raw_statfs(NULL, &s), &s);
		print("null-buf", raw_statfs(p, NULL), &s);
		print("unmapped-buf", raw_statfs(p, (struct statfs *)(uintptr_t)0x10), &s);
		char *pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		/* A path that runs into an unmapped page with no NUL. */
		memset(pages, 'a', 8192);
		munmap(pages + 4096, 4096);
		print("unterminated-path", raw_statfs(pages + 4096 - 16, &s), &s);
		/* A buffer the caller may only read. */
		char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		long r = raw_statfs(p, (struct statfs *)ro);
		printf("readonly-buf %s\n", r == 0 ? "ok" : strerrorname_np(errno));
		char *long_path = malloc(8192);
		memset(long_path, 'b', 8191);
		long_path[0] = '/';
		long_path[8191] = 0;
		print("long-path", raw_statfs(long_path, &s), &s);
		print("empty-path", raw_statfs("", &s), &s);
		print("after", raw_statfs(p, &s), &s);
	} else if (!strcmp(mode, "race") && argc == 5) {
		race_a = argv[2];
		race_b = argv[3];
		long n = atol(argv[4]);
		strcpy(race_buf, race_a);
		pthread_t t;
		pthread_create(&t, NULL, flipper, NULL);
		char seen[64][256];
		int nseen = 0;
		for (long i = 0; i < n; i++) {
			long r = raw_statfs(race_buf, &s);
			char line[256];
			unsigned *fsid = (unsigned *)&s.f_fsid;
			if (r == 0)
				snprintf(line, sizeof line, "race ok type=0x%lx bsize=%ld frsize=%ld blocks=%lu fsid=%x:%x",
					 (unsigned long)s.f_type, (long)s.f_bsize, (long)s.f_frsize,
					 (unsigned long)s.f_blocks, fsid[0], fsid[1]);
			else
				snprintf(line, sizeof line, "race err=%s", strerrorname_np(errno));
			int known = 0;
			for (int j = 0; j < nseen; j++)
				known |= !strcmp(seen[j], line);
			if (!known && nseen < 64)
				strcpy(seen[nseen++], line);
		}
		stop = 1;
		pthread_join(t, NULL);
		for (int j = 0; j < nseen; j++)
			printf("%s\n", seen[j]);
	} else if (!strcmp(mode, "flood") && argc == 4) {
		int secs = atoi(argv[2]), n = atoi(argv[3]);
		pthread_t t[64];
		long calls[64] = {0};
		for (int i = 0; i < n && i < 64; i++)
			pthread_create(&t[i], NULL, flooder, &calls[i]);
		sleep(secs);
		stop = 1;
		long total = 0;
		for (int i = 0; i < n && i < 64; i++) {
			pthread_join(t[i], NULL);
			total += calls[i];
		}
		printf("calls %ld\n", total);
	} else if (!strcmp(mode, "bench") && argc == 3) {
		long n = atol(argv[2]);
		int fd = open("/", O_PATH | O_CLOEXEC);
		double t0 = now();
		for (long i = 0; i < n; i++)
			raw_statfs("/", &s);
		double t1 = now();
		for (long i = 0; i < n; i++)
			syscall(SYS_fstatfs, fd, &s);
		double t2 = now();
		struct sysinfo si;
		for (long i = 0; i < n; i++)
			sysinfo(&si);
		double t3 = now();
		printf("statfs_ns=%.0f fstatfs_ns=%.0f sysinfo_ns=%.0f\n", (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
	} else {
		return 2;
	}
	return 0;
}
