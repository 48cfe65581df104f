/* syscalls [N]: the cost of a system call where this runs (under the
 * zone's seccomp filter, LXC's, or none), in nanoseconds per call:
 *
 *   getppid_ns=<x> ioctl_ns=<y> statfs_ns=<z>
 *
 * getppid stands for every call whose filter verdict does not depend on
 * its arguments (the kernel caches those); ioctl (FIONREAD on a pipe) for
 * one the filter must run for, as it reads ioctl's request; statfs("/")
 * for one a zone's monitor answers (a seccomp user notification: with a
 * quota, the zone's root shows it). statfs runs STATFS_CALLS times, fewer
 * than the monitor answers per 100 ms (256), so its budget does not
 * count in. Built with gcc -static by bench/run and copied into the
 * instance. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define STATFS_CALLS 200

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 2000000;
	int p[2];
	if (pipe(p) != 0)
		return 1;
	int avail;
	double t0 = now();
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	double t1 = now();
	for (long i = 0; i < n; i++)
		ioctl(p[0], FIONREAD, &avail);
	double t2 = now();
	struct statfs s;
	for (long i = 0; i < STATFS_CALLS; i++)
		statfs("/", &s);
	double t3 = now();
	printf("getppid_ns=%.1f ioctl_ns=%.1f statfs_ns=%.1f\n", (t1 - t0) / n, (t2 - t1) / n,
	       (t3 - t2) / STATFS_CALLS);
	return 0;
}
