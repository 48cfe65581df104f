/* uname: what uname(2) answers, for crates/zone/tests/zone.rs and the
 * escape suite (tests/escape/statfs.rs). Each answer is printed one field
 * a line, "LABEL FIELD=VALUE" (FIELD: sysname nodename release version
 * machine domainname; the value runs to the end of the line), or
 * "LABEL err=ENAME".
 *
 *   uname show                the native call (label "native")
 *   uname i386                i386's uname (122, int $0x80; label "i386",
 *                             "i386 unsupported" where it cannot be tried)
 *   uname bad                 NULL and unmapped buffers ("null", "unmapped":
 *                             err=), a read-only one ("readonly ok" or
 *                             "readonly err="), then "after" as show
 *   uname unshare HOST DOMAIN a new UTS namespace named HOST and DOMAIN,
 *                             then as show (label "unshared")
 *   uname thread HOST         a second thread unshares its UTS namespace,
 *                             names it HOST and calls uname (label
 *                             "thread"); then this one (label "main")
 *   uname as HEX MODE...      personality(HEX), then MODE
 *   uname flood SECS THREADS  uname in loops; prints "calls N"
 *   uname bench N             N calls: "uname_ns=X" per call
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The kernel's struct new_utsname. */
struct uts {
	char f[6][65];
};

static const char *const names[6] = { "sysname", "nodename", "release", "version", "machine", "domainname" };

static void print(const char *label, long r, const struct uts *u)
{
	if (r != 0) {
		printf("%s err=%s\n", label, strerrorname_np(errno));
	} else {
		for (int i = 0; i < 6; i++)
			printf("%s %s=%.65s\n", label, names[i], u->f[i]);
	}
	fflush(stdout);
}

static long raw_uname(void *buf)
{
	return syscall(SYS_uname, buf);
}

#if defined(__x86_64__)
static long int80(long nr, long a)
{
	int ret;
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a) : "memory", "r8", "r9", "r10", "r11");
	return ret;
}

static void i386(void)
{
	/* Below 4 GiB, where an i386 call can point. */
	struct uts *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (low == MAP_FAILED) {
		printf("i386 err=%s\n", strerrorname_np(errno));
		return;
	}
	long r = int80(122, (long)low);
	if (r < 0) {
		errno = -r;
		r = -1;
	}
	print("i386", r, low);
	munmap(low, 4096);
}
#else
static void i386(void)
{
	printf("i386 unsupported\n");
}
#endif

static volatile int stop;

static void *flooder(void *arg)
{
	long *calls = arg;
	struct uts u;
	while (!stop) {
		raw_uname(&u);
		(*calls)++;
	}
	return NULL;
}

static const char *thread_host;

static void *unsharer(void *arg)
{
	(void)arg;
	struct uts u;
	/* unshare(2) in a thread changes that thread's namespaces only. */
	if (unshare(CLONE_NEWUTS) != 0 || sethostname(thread_host, strlen(thread_host)) != 0) {
		printf("thread err=%s\n", strerrorname_np(errno));
		return NULL;
	}
	print("thread", raw_uname(&u), &u);
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
	struct uts u;
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "as") && argc >= 4) {
		if (personality(strtoul(argv[2], NULL, 16)) == -1) {
			printf("personality err=%s\n", strerrorname_np(errno));
			return 1;
		}
		argv += 2;
		argc -= 2;
	}
	const char *mode = argv[1];
	if (!strcmp(mode, "show")) {
		print("native", raw_uname(&u), &u);
	} else if (!strcmp(mode, "i386")) {
		i386();
	} else if (!strcmp(mode, "bad")) {
		print("null", raw_uname(NULL), &u);
		print("unmapped", raw_uname((void *)(uintptr_t)0x10), &u);
		/* A buffer the caller may only read. */
		void *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		long r = raw_uname(ro);
		printf("readonly %s\n", r == 0 ? "ok" : strerrorname_np(errno));
		print("after", raw_uname(&u), &u);
	} else if (!strcmp(mode, "unshare") && argc == 4) {
		if (unshare(CLONE_NEWUTS) != 0 || sethostname(argv[2], strlen(argv[2])) != 0 ||
		    setdomainname(argv[3], strlen(argv[3])) != 0) {
			printf("unshared err=%s\n", strerrorname_np(errno));
			return 1;
		}
		print("unshared", raw_uname(&u), &u);
	} else if (!strcmp(mode, "thread") && argc == 3) {
		thread_host = argv[2];
		pthread_t t;
		pthread_create(&t, NULL, unsharer, NULL);
		pthread_join(t, NULL);
		print("main", raw_uname(&u), &u);
	} else if (!strcmp(mode, "flood") && argc == 4) {
		int secs = atoi(argv[2]), n = atoi(argv[3]);
		pthread_t t[64];
		long calls[64] = { 0 };
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
		double t0 = now();
		for (long i = 0; i < n; i++)
			raw_uname(&u);
		printf("uname_ns=%.0f\n", (now() - t0) / n);
	} else {
		return 2;
	}
	return 0;
}
