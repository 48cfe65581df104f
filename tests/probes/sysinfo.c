/* sysinfo: prints what sysinfo(2) says, one key=value a line, and what
 * sysinfo(NULL) fails with. Built statically by tests/procfs.rs and run
 * inside a zone, whose busybox shows only part of it. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int main(void)
{
	struct sysinfo s;
	memset(&s, 0xa5, sizeof(s));
	if (sysinfo(&s) != 0) {
		printf("error=%s\n", strerrorname_np(errno));
		return 1;
	}
	printf("uptime=%ld\ntotalram=%lu\nfreeram=%lu\nsharedram=%lu\nbufferram=%lu\n"
	       "totalswap=%lu\nfreeswap=%lu\nprocs=%u\nmem_unit=%u\n",
	       s.uptime, s.totalram, s.freeram, s.sharedram, s.bufferram,
	       s.totalswap, s.freeswap, (unsigned)s.procs, s.mem_unit);
	long r = syscall(SYS_sysinfo, NULL);
	printf("null=%s\n", r == 0 ? "ok" : strerrorname_np(errno));
	return 0;
}
