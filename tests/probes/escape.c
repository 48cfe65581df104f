/* escape: what a zone's root tries, one subcommand a call, each printing
 * one line the escape suite reads. Built statically by the tests (zone
 * images have no compiler, and busybox lacks these calls).
 *
 *   escape euid                    "euid=N"
 *   escape as UID PATH [ARG...]    drops to UID (and gid UID, no groups), execs PATH
 *   escape root                    tries setresuid(0,0,0): "root: ok euid=0" or "root: EPERM euid=N"
 *   escape fd N                    "fd N: closed" or "fd N: open <what it names>"
 *   escape fill PATH               writes 1 MiB chunks until a write fails: "wrote N MiB: ERRNO"
 *   escape reflink SRC DST COUNT   FICLONEs SRC to DST.0 .. DST.COUNT-1: "cloned N" or "reflink: ERRNO"
 *   escape subvol DIR NAME         BTRFS_IOC_SUBVOL_CREATE: "subvol: ok" or "subvol: ERRNO"
 *   escape snap SRC DIR NAME       BTRFS_IOC_SNAP_CREATE_V2 of SRC: "snap: ok" or "snap: ERRNO"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define BTRFS_IOCTL_MAGIC 0x94
struct vol_args {
	int64_t fd;
	char name[4088];
};
struct vol_args_v2 {
	int64_t fd;
	uint64_t transid;
	uint64_t flags;
	uint64_t unused[4];
	char name[4040];
};
#define SUBVOL_CREATE _IOW(BTRFS_IOCTL_MAGIC, 14, struct vol_args)
#define SNAP_CREATE_V2 _IOW(BTRFS_IOCTL_MAGIC, 23, struct vol_args_v2)
#define FICLONE_ _IOW(0x94, 9, int)

static int usage(void)
{
	fprintf(stderr, "usage: escape euid|as|root|fd|fill|reflink|subvol|snap ...\n");
	return 2;
}

static int fill(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		printf("wrote 0 MiB: %s\n", strerrorname_np(errno));
		return 1;
	}
	static char chunk[1 << 20];
	uint64_t n = 1;
	long mib = 0;
	for (;;) {
		for (size_t i = 0; i < sizeof chunk; i += 8) {
			n = n * 6364136223846793005ULL + 1442695040888963407ULL;
			memcpy(chunk + i, &n, 8);
		}
		/* A short write near a limit: the next one says which limit. */
		size_t done = 0;
		while (done < sizeof chunk) {
			ssize_t w = write(fd, chunk + done, sizeof chunk - done);
			if (w < 0) {
				printf("wrote %ld MiB: %s\n", mib, strerrorname_np(errno));
				return 0;
			}
			done += (size_t)w;
		}
		mib++;
		if (mib % 64 == 0 && fdatasync(fd) != 0) {
			printf("wrote %ld MiB: %s\n", mib, strerrorname_np(errno));
			return 0;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	if (!strcmp(cmd, "euid")) {
		printf("euid=%d\n", (int)geteuid());
		return 0;
	}
	if (!strcmp(cmd, "as") && argc >= 4) {
		uid_t id = (uid_t)atoi(argv[2]);
		if (setgroups(0, NULL) != 0 || setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0) {
			printf("as: %s\n", strerrorname_np(errno));
			return 1;
		}
		execv(argv[3], argv + 3);
		printf("as: exec %s: %s\n", argv[3], strerrorname_np(errno));
		return 1;
	}
	if (!strcmp(cmd, "root")) {
		int r = setresuid(0, 0, 0);
		printf("root: %s euid=%d\n", r == 0 ? "ok" : strerrorname_np(errno), (int)geteuid());
		return r == 0 ? 0 : 1;
	}
	if (!strcmp(cmd, "fd") && argc == 3) {
		int fd = atoi(argv[2]);
		struct stat st;
		if (fstat(fd, &st) != 0) {
			printf("fd %d: closed\n", fd);
			return 0;
		}
		char link[64], target[PATH_MAX] = "";
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n > 0)
			target[n] = 0;
		printf("fd %d: open %s\n", fd, target);
		return 1;
	}
	if (!strcmp(cmd, "fill") && argc == 3)
		return fill(argv[2]);
	if (!strcmp(cmd, "reflink") && argc == 5) {
		int src = open(argv[2], O_RDONLY);
		if (src < 0) {
			printf("reflink: %s\n", strerrorname_np(errno));
			return 1;
		}
		int count = atoi(argv[4]), done = 0;
		for (; done < count; done++) {
			char name[PATH_MAX];
			snprintf(name, sizeof name, "%s.%d", argv[3], done);
			int dst = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (dst < 0 || ioctl(dst, FICLONE_, src) != 0) {
				printf("reflink: %s after %d\n", strerrorname_np(errno), done);
				return 1;
			}
			close(dst);
		}
		printf("cloned %d\n", done);
		return 0;
	}
	if (!strcmp(cmd, "subvol") && argc == 4) {
		int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
		struct vol_args a;
		memset(&a, 0, sizeof a);
		strncpy(a.name, argv[3], sizeof a.name - 1);
		int r = dir < 0 ? -1 : ioctl(dir, SUBVOL_CREATE, &a);
		printf("subvol: %s\n", r == 0 ? "ok" : strerrorname_np(errno));
		return r == 0 ? 0 : 1;
	}
	if (!strcmp(cmd, "snap") && argc == 5) {
		int src = open(argv[2], O_RDONLY | O_DIRECTORY);
		int dir = open(argv[3], O_RDONLY | O_DIRECTORY);
		struct vol_args_v2 a;
		memset(&a, 0, sizeof a);
		a.fd = src;
		strncpy(a.name, argv[4], sizeof a.name - 1);
		int r = (src < 0 || dir < 0) ? -1 : ioctl(dir, SNAP_CREATE_V2, &a);
		printf("snap: %s\n", r == 0 ? "ok" : strerrorname_np(errno));
		return r == 0 ? 0 : 1;
	}
	return usage();
}
