/* mdata: a raw client of the metadata socket, for what the guest tools
 * never send (tests/metadata.rs, bench/run).
 *
 *   mdata raw SOCKET LINE...     sends each LINE (C escapes \n \r \0 \xHH
 *                                 decoded), then prints every byte that
 *                                 comes back within 1 s, escaped
 *   mdata stall SOCKET SECONDS   sends half a V2 frame and holds the
 *                                 connection, silent, for SECONDS
 *   mdata hold SOCKET N SECONDS  opens N connections and holds them
 *   mdata flood SOCKET N         sends N valid GET frames in one write and
 *                                 counts the answers within 5 s
 *   mdata bench SOCKET KEY N     N GETs of KEY on one V2 connection, one at
 *                                 a time; prints "median_us p99_us"
 *   mdata loop SOCKET KEY SECS   GETs of KEY on one V2 connection, one at a
 *                                 time, for SECS seconds; prints how many
 *   mdata bigline SOCKET BYTES   sends a line of BYTES 'A's and a newline,
 *                                 then a valid GET: prints what answers
 *
 * Exit 0, or 1 with the reason on stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int die(const char *what)
{
	perror(what);
	exit(1);
}

static int connect_to(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strncpy(a.sun_path, path, sizeof a.sun_path - 1);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	return fd;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		p += w;
		n -= (size_t)w;
	}
}

/* As write_all, but a connection the other side closed only stops it. */
static void write_some(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static uint32_t crc_table[256];

static uint32_t crc32(const char *p, size_t n)
{
	if (!crc_table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			crc_table[i] = c;
		}
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ (unsigned char)p[i]) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static void b64(const char *in, char *out)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(in), o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (unsigned char)in[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)in[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)in[i + 2];
		out[o++] = t[(v >> 18) & 63];
		out[o++] = t[(v >> 12) & 63];
		out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? t[v & 63] : '=';
	}
	out[o] = 0;
}

/* A V2 GET frame for key with request id `id`, newline-terminated. */
static int get_frame(char *buf, size_t size, unsigned id, const char *key)
{
	char k[512], body[700];
	b64(key, k);
	int bl = snprintf(body, sizeof body, "%08x GET %s", id, k);
	return snprintf(buf, size, "V2 %d %08x %s\n", bl, crc32(body, (size_t)bl), body);
}

static size_t unescape(const char *s, char *out)
{
	size_t o = 0;
	for (; *s; s++) {
		if (*s != '\\' || !s[1]) {
			out[o++] = *s;
			continue;
		}
		s++;
		switch (*s) {
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case '0': out[o++] = 0; break;
		case 'x': {
			char h[3] = {s[1], s[2], 0};
			out[o++] = (char)strtol(h, NULL, 16);
			s += 2;
			break;
		}
		default: out[o++] = *s;
		}
	}
	return o;
}

/* Reads what comes within ms milliseconds (or until EOF) into buf. */
static size_t read_for(int fd, char *buf, size_t size, int ms)
{
	size_t got = 0;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (got < size && poll(&p, 1, ms) > 0) {
		ssize_t r = read(fd, buf + got, size - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	return got;
}

static void print_escaped(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\n')
			fputs("\\n", stdout);
		else if (c < 32 || c > 126 || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	putchar('\n');
}

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static char buf[1 << 20];
	if (argc < 3) {
		fputs("usage: mdata raw|stall|hold|flood|bench|bigline SOCKET ...\n", stderr);
		return 1;
	}
	const char *mode = argv[1], *path = argv[2];
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(mode, "raw")) {
		int fd = connect_to(path);
		for (int i = 3; i < argc; i++) {
			size_t n = unescape(argv[i], buf);
			write_all(fd, buf, n);
		}
		size_t got = read_for(fd, buf, sizeof buf, 1000);
		print_escaped(buf, got);
		return 0;
	}
	if (!strcmp(mode, "stall") && argc == 4) {
		int fd = connect_to(path);
		write_all(fd, "V2 21 ", 6);
		sleep((unsigned)atoi(argv[3]));
		close(fd);
		return 0;
	}
	if (!strcmp(mode, "hold") && argc == 5) {
		int n = atoi(argv[3]);
		for (int i = 0; i < n; i++)
			connect_to(path);
		sleep((unsigned)atoi(argv[4]));
		return 0;
	}
	if (!strcmp(mode, "flood") && argc == 4) {
		int n = atoi(argv[3]), fd = connect_to(path);
		write_all(fd, "NEGOTIATE V2\n", 13);
		read_for(fd, buf, 64, 1000);
		size_t len = 0;
		for (int i = 0; i < n && len + 200 < sizeof buf; i++)
			len += (size_t)get_frame(buf + len, sizeof buf - len, (unsigned)i, "sdc:uuid");
		write_some(fd, buf, len);
		size_t got = read_for(fd, buf, sizeof buf, 5000);
		int lines = 0;
		for (size_t i = 0; i < got; i++)
			lines += buf[i] == '\n';
		printf("%d\n", lines);
		return 0;
	}
	if (!strcmp(mode, "bench") && argc == 5) {
		int n = atoi(argv[4]), fd = connect_to(path);
		write_all(fd, "NEGOTIATE V2\n", 13);
		if (!read_for(fd, buf, 64, 2000))
			return die("negotiate"), 1;
		double *t = calloc((size_t)n, sizeof *t);
		char frame[800];
		for (int i = 0; i < n; i++) {
			int fl = get_frame(frame, sizeof frame, (unsigned)i, argv[3]);
			double t0 = now_us();
			write_all(fd, frame, (size_t)fl);
			size_t got = 0;
			while (!got || buf[got - 1] != '\n') {
				ssize_t r = read(fd, buf + got, sizeof buf - got);
				if (r <= 0)
					return die("read"), 1;
				got += (size_t)r;
			}
			t[i] = now_us() - t0;
		}
		qsort(t, (size_t)n, sizeof *t, cmp);
		printf("%.1f %.1f\n", t[n / 2], t[(n * 99) / 100]);
		return 0;
	}
	if (!strcmp(mode, "loop") && argc == 5) {
		int fd = connect_to(path);
		write_all(fd, "NEGOTIATE V2\n", 13);
		if (!read_for(fd, buf, 64, 2000))
			return die("negotiate"), 1;
		double end = now_us() + atof(argv[4]) * 1e6;
		long n = 0;
		char frame[800];
		while (now_us() < end) {
			int fl = get_frame(frame, sizeof frame, (unsigned)n, argv[3]);
			write_all(fd, frame, (size_t)fl);
			size_t got = 0;
			while (!got || buf[got - 1] != '\n') {
				ssize_t r = read(fd, buf + got, sizeof buf - got);
				if (r <= 0)
					return die("read"), 1;
				got += (size_t)r;
			}
			n++;
		}
		printf("%ld\n", n);
		return 0;
	}
	if (!strcmp(mode, "bigline") && argc == 4) {
		size_t n = (size_t)atol(argv[3]);
		int fd = connect_to(path);
		memset(buf, 'A', sizeof buf);
		while (n > 0) {
			size_t chunk = n < sizeof buf ? n : sizeof buf;
			write_some(fd, buf, chunk);
			n -= chunk;
		}
		write_some(fd, "\n", 1);
		char frame[800];
		int fl = get_frame(frame, sizeof frame, 7, "sdc:uuid");
		write_some(fd, "NEGOTIATE V2\n", 13);
		write_some(fd, frame, (size_t)fl);
		size_t got = read_for(fd, buf, sizeof buf, 2000);
		print_escaped(buf, got);
		return 0;
	}
	fputs("mdata: bad arguments\n", stderr);
	return 1;
}
