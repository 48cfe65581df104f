/* netprobe: an instance's init that says "network ready" to its gateway,
 * then becomes the image's own init.
 *
 * It reads the default route's gateway from /proc/net/route (the NIC and
 * its routes are in place before init runs, in a zone as in an LXC
 * container), then sends a UDP datagram "netprobe <hostname>" to port
 * NETPROBE_PORT of the gateway every millisecond until an answer comes
 * (or NETPROBE_SECONDS pass), and execs /sbin/init. bench/run listens on
 * the host's side of the bridge and timestamps the first datagram from
 * each hostname: the moment the instance's first packet reached its
 * gateway. The datagrams sent before the neighbour (ARP) answer are
 * queued by the kernel and leave together once it comes. bench/run
 * builds it static (gcc -static) and puts it in the benchmark's image;
 * `init_name` (zonevisor) or `lxc.init.cmd` (LXC) makes it PID 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define NETPROBE_PORT 47999
#define NETPROBE_SECONDS 30

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The default route's gateway (network byte order), or 0 when there is none yet. */
static in_addr_t default_gateway(void)
{
	FILE *f = fopen("/proc/net/route", "r");
	if (!f)
		return 0;
	char line[256];
	in_addr_t gw = 0;
	while (fgets(line, sizeof line, f)) {
		char iface[64];
		unsigned dst, via, flags, mask;
		/* Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex, as in memory) */
		if (sscanf(line, "%63s %x %x %x %*d %*d %*d %x", iface, &dst, &via, &flags, &mask) == 5 &&
		    dst == 0 && mask == 0 && via != 0) {
			gw = via;
			break;
		}
	}
	fclose(f);
	return gw;
}

int main(void)
{
	struct utsname u;
	char msg[128];
	uname(&u);
	snprintf(msg, sizeof msg, "netprobe %s", u.nodename);

	double deadline = now() + NETPROBE_SECONDS;
	in_addr_t gw = 0;
	while (!(gw = default_gateway()) && now() < deadline)
		usleep(1000);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (gw && fd >= 0) {
		struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(NETPROBE_PORT)};
		to.sin_addr.s_addr = gw;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char buf[64];
		while (now() < deadline) {
			/* Errors (no neighbour yet, a full queue) only mean: again. */
			sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&to, sizeof to);
			if (poll(&p, 1, 1) > 0 && recv(fd, buf, sizeof buf, 0) >= 0)
				break;
		}
	}
	if (fd >= 0)
		close(fd);
	char *argv[] = {"/sbin/init", NULL};
	execv(argv[0], argv);
	perror("netprobe: exec /sbin/init");
	for (;;)
		pause();
}
