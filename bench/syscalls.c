/* syscalls [N]: the cost of a system call where this runs (under the
 * zone's seccomp filter, LXC's, or none), in nanoseconds per call:
 *
 *   getppid_ns=<x> ioctl_ns=<y>
 *
 * getppid stands for every call whose filter verdict does not depend on
 * its arguments (the kernel caches those); ioctl (FIONREAD on a pipe) for
 * one the filter must run for, as it reads ioctl's request. Built with
 * gcc -static by bench/run and copied into the instance. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
	printf("getppid_ns=%.1f ioctl_ns=%.1f\n", (t1 - t0) / n, (t2 - t1) / n);
	return 0;
}
