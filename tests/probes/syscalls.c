/* syscalls: makes system calls by number from inside a zone, for
 * tests/escape/syscalls.rs. Built statically (and, as gcc -static does,
 * not position-independent, so its static data lies below 4 GiB where
 * i386 calls can point to it). Calls go by number (syscall(2), and
 * int $0x80 for i386), so libc need not know them; their arguments make
 * a call that the filter wrongly let through fail harmlessly (NULL
 * pointers: EFAULT) rather than do something.
 *
 *   syscalls call ABI:NR...      ABI: x86_64 or aarch64 (native), i386, x32.
 *                                Every argument 0. One line per call:
 *                                "ABI:NR ok" or "ABI:NR <errno name>".
 *   syscalls remount DIR FILE    tries to make the read-only mount DIR
 *                                writable (open_tree_attr, both ABIs;
 *                                open_tree + mount_setattr; mount_setattr;
 *                                a remount; fspick), to clone /proc, and
 *                                to write DIR/FILE: one line per try.
 *   syscalls btrfs DIR           tries to create btrfs subvolumes and
 *                                snapshots in DIR with ioctls (both ABIs,
 *                                and with high bits in the request), and
 *                                two ordinary ioctls: one line per try.
 *   syscalls ids                 prints "uid U euid E".
 *   syscalls as UID PROG ARG...  runs PROG as UID (and gid UID).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/btrfs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#define NR_OPEN_TREE 428
#define NR_FSPICK 433
#define NR_MOUNT_SETATTR 442
#define NR_OPEN_TREE_ATTR 467
#define I386_IOCTL 54
#define X32_BIT 0x40000000L
#define OPEN_TREE_CLONE_ 1
#define AT_RECURSIVE_ 0x8000
#define MOUNT_ATTR_RDONLY_ 0x1

struct attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* Static, so below 4 GiB: i386 calls may point here. */
static struct attr clear_ro = { 0, MOUNT_ATTR_RDONLY_, 0, 0 };
static char path32[4096];
static struct btrfs_ioctl_vol_args va;
static struct btrfs_ioctl_vol_args_v2 va2;

static int low(const void *p)
{
	return (uintptr_t)p < 0x100000000ULL;
}

/* The result of a call that returns -1 and sets errno. */
static const char *res(long r)
{
	return r < 0 ? strerrorname_np(errno) : "ok";
}

/* The result of a raw call that returns -errno. */
static const char *raw(long r)
{
	return r < 0 && r > -4096 ? strerrorname_np((int)-r) : "ok";
}

#if defined(__x86_64__)
static long int80(long nr, long a, long b, long c, long d, long e)
{
	int ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
			 : "memory", "r8", "r9", "r10", "r11");
	return ret;
}
#define HAVE_I386 1
#else
#define HAVE_I386 0
static long int80(long nr, long a, long b, long c, long d, long e)
{
	(void)nr, (void)a, (void)b, (void)c, (void)d, (void)e;
	return -ENOSYS;
}
#endif

static int call(int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		char abi[16];
		long nr;
		const char *out;
		if (sscanf(argv[i], "%15[^:]:%ld", abi, &nr) != 2) {
			fprintf(stderr, "not ABI:NR: %s\n", argv[i]);
			return 2;
		}
		if (!strcmp(abi, "i386")) {
			out = HAVE_I386 ? raw(int80(nr, 0, 0, 0, 0, 0)) : "unsupported";
		} else if (!strcmp(abi, "x32")) {
			out = res(syscall(X32_BIT | nr, 0, 0, 0, 0, 0, 0));
		} else {
			out = res(syscall(nr, 0, 0, 0, 0, 0, 0));
		}
		printf("%s %s\n", argv[i], out);
		fflush(stdout);
	}
	return 0;
}

/* Writes DIR/FILE under `dirfd` (a detached clone or AT_FDCWD). */
static const char *tamper(int dirfd, const char *file)
{
	int fd = openat(dirfd, file, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		return strerrorname_np(errno);
	if (write(fd, "tampered\n", 9) != 9) {
		close(fd);
		return strerrorname_np(errno);
	}
	close(fd);
	return "ok";
}

static int remount(const char *dir, const char *file)
{
	long fd;
	char path[4200];

	fd = syscall(NR_OPEN_TREE_ATTR, AT_FDCWD, dir, OPEN_TREE_CLONE_ | O_CLOEXEC, &clear_ro, sizeof clear_ro);
	printf("open_tree_attr %s%s%s\n", res(fd), fd >= 0 ? " write " : "", fd >= 0 ? tamper((int)fd, file) : "");

	snprintf(path32, sizeof path32, "%s", dir);
	if (!HAVE_I386 || !low(path32) || !low(&clear_ro)) {
		printf("i386_open_tree_attr unsupported\n");
	} else {
		fd = int80(NR_OPEN_TREE_ATTR, AT_FDCWD, (long)path32, OPEN_TREE_CLONE_, (long)&clear_ro, sizeof clear_ro);
		printf("i386_open_tree_attr %s%s%s\n", raw(fd), fd >= 0 ? " write " : "",
		       fd >= 0 ? tamper((int)fd, file) : "");
	}

	fd = syscall(NR_OPEN_TREE, AT_FDCWD, dir, OPEN_TREE_CLONE_ | O_CLOEXEC);
	printf("open_tree %s\n", res(fd));
	if (fd >= 0) {
		long r = syscall(NR_MOUNT_SETATTR, fd, "", AT_EMPTY_PATH, &clear_ro, sizeof clear_ro);
		printf("mount_setattr_on_clone %s write %s\n", res(r), tamper((int)fd, file));
	}

	printf("mount_setattr %s\n", res(syscall(NR_MOUNT_SETATTR, AT_FDCWD, dir, 0, &clear_ro, sizeof clear_ro)));
	printf("remount %s\n", res(mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND, NULL)));
	printf("fspick %s\n", res(syscall(NR_FSPICK, AT_FDCWD, dir, 0)));

	/* /proc without its masks: a clone of the proc mount alone. */
	fd = syscall(NR_OPEN_TREE_ATTR, AT_FDCWD, "/proc", OPEN_TREE_CLONE_ | O_CLOEXEC, NULL, 0);
	printf("proc_open_tree_attr %s\n", res(fd));
	fd = syscall(NR_OPEN_TREE, AT_FDCWD, "/proc", OPEN_TREE_CLONE_ | O_CLOEXEC);
	printf("proc_open_tree %s\n", res(fd));

	snprintf(path, sizeof path, "%s/%s", dir, file);
	printf("write %s\n", tamper(AT_FDCWD, path));
	return 0;
}

static void name(const char *n)
{
	memset(&va, 0, sizeof va);
	memset(&va2, 0, sizeof va2);
	snprintf(va.name, sizeof va.name, "%s", n);
	snprintf(va2.name, sizeof va2.name, "%s", n);
}

static int btrfs(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		perror(dir);
		return 2;
	}
	name("zv-subvol");
	printf("SUBVOL_CREATE %s\n", res(ioctl(dfd, BTRFS_IOC_SUBVOL_CREATE, &va)));
	name("zv-subvol-high");
	printf("SUBVOL_CREATE_HIGH %s\n",
	       res(syscall(SYS_ioctl, dfd, (1UL << 32) | BTRFS_IOC_SUBVOL_CREATE, &va)));
	name("zv-subvol-v2");
	printf("SUBVOL_CREATE_V2 %s\n", res(ioctl(dfd, BTRFS_IOC_SUBVOL_CREATE_V2, &va2)));
	name("zv-snap");
	va.fd = dfd;
	printf("SNAP_CREATE %s\n", res(ioctl(dfd, BTRFS_IOC_SNAP_CREATE, &va)));
	name("zv-snap-v2");
	va2.fd = dfd;
	printf("SNAP_CREATE_V2 %s\n", res(ioctl(dfd, BTRFS_IOC_SNAP_CREATE_V2, &va2)));
	name("zv-snap-v2-high");
	va2.fd = dfd;
	printf("SNAP_CREATE_V2_HIGH %s\n",
	       res(syscall(SYS_ioctl, dfd, (0xffffUL << 48) | BTRFS_IOC_SNAP_CREATE_V2, &va2)));
	if (!HAVE_I386 || !low(&va) || !low(&va2)) {
		printf("i386_SUBVOL_CREATE unsupported\ni386_SNAP_CREATE_V2 unsupported\n");
	} else {
		name("zv-subvol-i386");
		printf("i386_SUBVOL_CREATE %s\n",
		       raw(int80(I386_IOCTL, dfd, (long)(uint32_t)BTRFS_IOC_SUBVOL_CREATE, (long)&va, 0, 0)));
		name("zv-snap-i386");
		va2.fd = dfd;
		printf("i386_SNAP_CREATE_V2 %s\n",
		       raw(int80(I386_IOCTL, dfd, (long)(uint32_t)BTRFS_IOC_SNAP_CREATE_V2, (long)&va2, 0, 0)));
	}
	/* Ordinary ioctls still reach the kernel. */
	int p[2], n = -1;
	if (pipe(p) == 0)
		printf("FIONREAD %s\n", res(ioctl(p[0], FIONREAD, &n)));
	struct termios t;
	printf("TCGETS %s\n", res(ioctl(0, TCGETS, &t)));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "call"))
		return call(argc - 2, argv + 2);
	if (argc == 4 && !strcmp(argv[1], "remount"))
		return remount(argv[2], argv[3]);
	if (argc == 3 && !strcmp(argv[1], "btrfs"))
		return btrfs(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "ids")) {
		printf("uid %d euid %d\n", (int)getuid(), (int)geteuid());
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "as")) {
		gid_t id = (gid_t)atoi(argv[2]);
		if (setgroups(0, NULL) || setresgid(id, id, id) || setresuid(id, id, id)) {
			perror("as");
			return 1;
		}
		execv(argv[3], argv + 3);
		perror(argv[3]);
		return 127;
	}
	fprintf(stderr, "usage: syscalls call ABI:NR... | remount DIR FILE | btrfs DIR | ids | as UID PROG ARG...\n");
	return 2;
}
