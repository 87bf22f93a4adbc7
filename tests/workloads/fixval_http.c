/* fixval_http PORT CONFIG [SECONDS]: a small HTTP/1.1 keep-alive server on
 * 127.0.0.1:PORT answering every request "200 ok" after a delay read from
 * CONFIG (microseconds, one number), re-read on every request. The fix and
 * validate e2e test puts 20000 in CONFIG (the slow service), investigates it,
 * writes 0 (the fix) and validates: a config change, as in real life.
 * One thread per connection; exits after SECONDS (default 120). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *config;

static long delay_us(void)
{
	FILE *f = fopen(config, "r");
	long d = 0;
	if (!f) return 0;
	if (fscanf(f, "%ld", &d) != 1) d = 0;
	fclose(f);
	return d < 0 ? 0 : d;
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	char buf[8192];
	size_t have = 0;
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0) break;
		have += (size_t)n;
		buf[have] = 0;
		char *end;
		/* every complete request header in the buffer gets its answer */
		while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
			long d = delay_us();
			if (d > 0) {
				struct timespec ts = { d / 1000000, (d % 1000000) * 1000 };
				nanosleep(&ts, NULL);
			}
			if (write(fd, answer, sizeof(answer) - 1) < 0) goto out;
			size_t used = (size_t)(end + 4 - buf);
			memmove(buf, end + 4, have - used + 1);
			have -= used;
		}
		if (have >= sizeof(buf) - 1) break;   /* a header this long is not ours */
	}
out:
	close(fd);
	return NULL;
}

static void *stopper(void *arg)
{
	sleep((unsigned)(long)arg);
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s PORT CONFIG [SECONDS]\n", argv[0]);
		return 2;
	}
	config = argv[2];
	long secs = argc > 3 ? atol(argv[3]) : 120;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 128) < 0) {
		perror("fixval_http: bind/listen");
		return 1;
	}
	pthread_t t;
	pthread_create(&t, NULL, stopper, (void *)secs);
	pthread_detach(t);
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0) continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, NULL, serve, (void *)(long)c) != 0) { close(c); continue; }
		pthread_detach(t);
	}
}
