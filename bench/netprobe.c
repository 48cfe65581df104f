/* netprobe: an instance's init that says "network ready" to its gateway,
 * then becomes the image's own init.
 *
 * It reads the default route's gateway from /proc/net/route (the NIC and
 * its routes are in place before init runs, in a zone as in an LXC
 * container), then sends a UDP datagram "netprobe <hostname>" to port
 * NETPROBE_PORT of the gateway, and an ICMP echo request carrying the
 * same text, every millisecond until an answer to either comes (or
 * NETPROBE_SECONDS pass), and execs /sbin/init. bench/run listens on the
 * host's side of the bridge and timestamps the first datagram or echo
 * request from each hostname: the moment the instance's first packet
 * reached its gateway. The echo is for a network whose host answers only
 * DHCP, DNS and ICMP (zonevisor's managed networks): the kernel answers
 * it, and a raw socket of bench/run's sees it. The datagrams sent before the neighbour (ARP) answer are
 * queued by the kernel and leave together once it comes. bench/run
 * builds it static (gcc -static) and puts it in the benchmark's image;
 * `init_name` (zonevisor) or `lxc.init.cmd` (LXC) makes it PID 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
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

/* The Internet checksum of len bytes at data. */
static unsigned short checksum(const void *data, size_t len)
{
	const unsigned char *b = data;
	unsigned long sum = 0;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (b[i] << 8) | b[i + 1];
	if (len & 1)
		sum += b[len - 1] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons(~sum & 0xffff);
}

/* An echo request carrying msg, in buf; returns its length. */
static size_t echo_request(unsigned char *buf, size_t size, const char *msg, unsigned short seq)
{
	size_t n = sizeof(struct icmphdr) + strlen(msg);
	if (n > size)
		return 0;
	struct icmphdr h = {.type = ICMP_ECHO};
	h.un.echo.id = htons(0x6e70);
	h.un.echo.sequence = htons(seq);
	memcpy(buf, &h, sizeof h);
	memcpy(buf + sizeof h, msg, strlen(msg));
	h.checksum = checksum(buf, n);
	memcpy(buf, &h, sizeof h);
	return n;
}

/* Whether the raw socket fd holds an echo reply (it is drained either way). */
static int echo_reply(int fd)
{
	unsigned char buf[256];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
		struct iphdr *ip = (struct iphdr *)buf;
		size_t hl = ip->ihl * 4;
		if ((size_t)n >= hl + sizeof(struct icmphdr) && buf[hl] == ICMP_ECHOREPLY)
			return 1;
	}
	return 0;
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
	/* No raw socket (no CAP_NET_RAW): the datagram alone. */
	int icmp = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
	if (gw && fd >= 0) {
		struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(NETPROBE_PORT)};
		to.sin_addr.s_addr = gw;
		struct sockaddr_in ping = {.sin_family = AF_INET};
		ping.sin_addr.s_addr = gw;
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = icmp, .events = POLLIN}};
		char buf[64];
		unsigned char req[192];
		unsigned short seq = 0;
		while (now() < deadline) {
			/* Errors (no neighbour yet, a full queue) only mean: again. */
			sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&to, sizeof to);
			if (icmp >= 0) {
				size_t n = echo_request(req, sizeof req, msg, ++seq);
				sendto(icmp, req, n, 0, (struct sockaddr *)&ping, sizeof ping);
			}
			if (poll(p, icmp >= 0 ? 2 : 1, 1) > 0) {
				if ((p[0].revents & POLLIN) && recv(fd, buf, sizeof buf, 0) >= 0)
					break;
				if ((p[1].revents & POLLIN) && echo_reply(icmp))
					break;
			}
		}
	}
	if (fd >= 0)
		close(fd);
	if (icmp >= 0)
		close(icmp);
	char *argv[] = {"/sbin/init", NULL};
	execv(argv[0], argv);
	perror("netprobe: exec /sbin/init");
	for (;;)
		pause();
}
