/* tcpstream: one TCP stream's throughput.
 *
 *   tcpstream recv PORT          accepts one connection, reads it to its end;
 *                                prints "listening" once it listens, then
 *                                "bytes N seconds S" (first byte to end)
 *   tcpstream send IP PORT SECS  connects (retrying for 5 s while refused),
 *                                writes for SECS seconds, closes;
 *                                prints "bytes N seconds S"
 *
 * bench/run builds it static (gcc -static) and runs it in two zones, or in
 * two bare network namespaces, and takes the receiver's figure. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (128 * 1024)

static char buf[CHUNK];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int recv_side(int port)
{
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY};
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0) {
		perror("tcpstream: listen");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	int s = accept(ls, NULL, NULL);
	if (s < 0) {
		perror("tcpstream: accept");
		return 1;
	}
	long long total = 0;
	double t0 = 0, t1 = 0;
	for (;;) {
		ssize_t n = read(s, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (!total)
			t0 = now();
		total += n;
		t1 = now();
	}
	printf("bytes %lld seconds %.6f\n", total, t1 - t0);
	return total > 0 ? 0 : 1;
}

static int send_side(const char *ip, int port, double seconds)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		fprintf(stderr, "tcpstream: bad address %s\n", ip);
		return 2;
	}
	int s = -1;
	double give_up = now() + 5;
	for (;;) {
		s = socket(AF_INET, SOCK_STREAM, 0);
		if (connect(s, (struct sockaddr *)&a, sizeof a) == 0)
			break;
		int e = errno;
		close(s);
		if (e != ECONNREFUSED || now() > give_up) {
			fprintf(stderr, "tcpstream: connect %s:%d: %s\n", ip, port, strerror(e));
			return 1;
		}
		usleep(10000);
	}
	memset(buf, 'z', sizeof buf);
	long long total = 0;
	double t0 = now(), end = t0 + seconds;
	while (now() < end) {
		ssize_t n = write(s, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			perror("tcpstream: write");
			return 1;
		}
		total += n;
	}
	close(s);
	printf("bytes %lld seconds %.6f\n", total, now() - t0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "recv"))
		return recv_side(atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "send"))
		return send_side(argv[2], atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: tcpstream recv PORT | tcpstream send IP PORT SECONDS\n");
	return 2;
}
