/* ptrace_attach PID: tries PTRACE_ATTACH on PID and prints "attached" or
 * "refused: <errno name>". Built statically by tests/security.rs and run
 * inside a zone, whose busybox has no ptrace tool. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: ptrace_attach PID\n");
		return 2;
	}
	pid_t pid = (pid_t)atoi(argv[1]);
	if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) != 0) {
		printf("refused: %s\n", strerrorname_np(errno));
		return 1;
	}
	waitpid(pid, NULL, __WALL);
	ptrace(PTRACE_DETACH, pid, NULL, NULL);
	printf("attached\n");
	return 0;
}
