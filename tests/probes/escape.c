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
 *   escape chroot MARKER           the classic chroot breakout (chroot into a subdirectory,
 *                                  chdir .. 64 times, chroot .): "still inside" when MARKER
 *                                  (a file only the zone has) is still there, else "escaped"
 *   escape mknod MAJOR MINOR       makes a block device node and reads it: "mknod: ERRNO",
 *                                  "open: ERRNO", "read: ERRNO" or "read: ok"
 *   escape open PATH               opens PATH and reads it: "open: ERRNO", "read: ERRNO" or "read: ok"
 *   escape hijack SECONDS          CVE-2019-5736's shape: waits for a process whose
 *                                  executable is not in the zone (a host binary run in it,
 *                                  or zlogin's child before its exec), stops it, holds its
 *                                  executable (O_PATH), kills it and once it is gone opens
 *                                  the executable
 *                                  for writing: "hijack: ERRNO <path>", "hijack: opened <path>",
 *                                  or "hijack: none" when no such process came
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
#include <dirent.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <time.h>
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
	if (!strcmp(cmd, "chroot") && argc == 3) {
		mkdir("/tmp/chroot-breakout", 0755);
		if (chroot("/tmp/chroot-breakout") != 0) {
			printf("chroot: %s\n", strerrorname_np(errno));
			return 1;
		}
		for (int i = 0; i < 64; i++)
			if (chdir("..") != 0)
				break;
		if (chroot(".") != 0) {
			printf("chroot .: %s\n", strerrorname_np(errno));
			return 1;
		}
		struct stat st;
		printf("%s\n", stat(argv[2], &st) == 0 ? "still inside" : "escaped");
		return 0;
	}
	if (!strcmp(cmd, "mknod") && argc == 4) {
		const char *node = "/tmp/escape-disk";
		unlink(node);
		if (mknod(node, S_IFBLK | 0600, makedev(atoi(argv[2]), atoi(argv[3]))) != 0) {
			printf("mknod: %s\n", strerrorname_np(errno));
			return 0;
		}
		int fd = open(node, O_RDONLY);
		if (fd < 0) {
			printf("open: %s\n", strerrorname_np(errno));
			return 0;
		}
		char buf[512];
		ssize_t n = read(fd, buf, sizeof buf);
		printf("read: %s\n", n == (ssize_t)sizeof buf ? "ok" : strerrorname_np(errno));
		return 0;
	}
	if (!strcmp(cmd, "open") && argc == 3) {
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0) {
			printf("open: %s\n", strerrorname_np(errno));
			return 0;
		}
		char buf[16];
		ssize_t n = read(fd, buf, sizeof buf);
		printf("read: %s\n", n >= 0 ? "ok" : strerrorname_np(errno));
		return 0;
	}
	if (!strcmp(cmd, "hijack") && argc == 3) {
		time_t until = time(NULL) + atoi(argv[2]);
		pid_t me = getpid();
		while (time(NULL) < until) {
			DIR *d = opendir("/proc");
			struct dirent *e;
			while (d && (e = readdir(d))) {
				pid_t pid = (pid_t)atoi(e->d_name);
				if (pid <= 1 || pid == me)
					continue;
				char link[64], exe[PATH_MAX];
				snprintf(link, sizeof link, "/proc/%d/exe", pid);
				ssize_t n = readlink(link, exe, sizeof exe - 1);
				if (n < 0 && (errno == EACCES || errno == EPERM)) {
					/* Not the zone's to look at: a process that entered
					 * from the host (not dumpable), caught before its exec. */
					printf("hijack: %s %s (readlink)\n", strerrorname_np(errno), link);
					return 0;
				}
				if (n <= 0)
					continue;
				exe[n] = 0;
				struct stat st;
				if (stat(exe, &st) == 0)
					continue; /* a file of the zone's */
				/* Hold it still, take its executable, then end it. */
				kill(pid, SIGSTOP);
				int fd = open(link, O_PATH);
				if (fd < 0) {
					int e = errno;
					kill(pid, SIGCONT);
					printf("hijack: %s %s (O_PATH)\n", strerrorname_np(e), exe);
					return 0;
				}
				kill(pid, SIGKILL);
				/* Wait for the process to end: its text is then not busy. */
				char dir[64];
				snprintf(dir, sizeof dir, "/proc/%d", pid);
				for (int i = 0; i < 500 && stat(dir, &st) == 0; i++)
					usleep(10000);
				char self[64];
				snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
				int w = open(self, O_WRONLY);
				if (w < 0)
					printf("hijack: %s %s\n", strerrorname_np(errno), exe);
				else
					printf("hijack: opened %s\n", exe);
				return 0;
			}
			if (d)
				closedir(d);
		}
		printf("hijack: none\n");
		return 0;
	}
	return usage();
}
