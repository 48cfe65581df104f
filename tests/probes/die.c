/* die: an init that dies the way its name says, for tests/host.rs (copied
 * into a zone as /sbin/die-segv or /sbin/die-hog and run as its init).
 *
 *   die-segv  touches address 0: the kernel kills it with SIGSEGV (a
 *             fault is delivered even to a PID namespace's init)
 *   die-hog   allocates and touches memory, 1 MiB at a time, up to
 *             4 GiB: the zone's memory limit makes the OOM killer end it
 *   die-exit  exits with status 3 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	(void)argc;
	const char *name = strrchr(argv[0], '/');
	name = name ? name + 1 : argv[0];
	if (strcmp(name, "die-segv") == 0) {
		volatile int *p = NULL;
		*p = 1;
	} else if (strcmp(name, "die-hog") == 0) {
		for (int i = 0; i < 4096; i++) {
			char *m = malloc(1 << 20);
			if (!m)
				break;
			memset(m, i & 0xff, 1 << 20);
		}
		/* Not killed: the limit did not hold. */
		return 42;
	} else if (strcmp(name, "die-exit") == 0) {
		return 3;
	}
	return 2;
}
