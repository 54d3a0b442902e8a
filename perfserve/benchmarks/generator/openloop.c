/* openloop: POSTs one body at a constant rate, whatever the answers do, and times each
 * request from its scheduled moment. A minimal open-loop generator that shares no code
 * with perfserve's own, to cross-check the sweep's knee at rates k6 cannot offer from
 * one core (`perfserve bench-generator --openloop`, which compiles it).
 *
 * One thread, one epoll loop: a timerfd set to the next arrival (microsecond wake-ups,
 * so arrivals leave on schedule rather than in bursts); keep-alive connections that
 * carry one request at a time, the most recently freed reused first; arrivals that find
 * every connection busy wait in line, still timed from their schedule.
 *
 *   openloop HOST PORT PATH BODY_FILE RATE SECONDS WARMUP_SHARE MAX_CONNECTIONS
 *
 * prints one JSON line: arrivals sent, answers, failures (not a 200, a broken connection,
 * or no answer 30 s after the last arrival), late arrivals (noticed more than 5 ms after
 * their schedule: the generator's own delay), and, over the answers after the warm-up
 * share of the arrivals, p50 and p99 from schedule and the same less each answer's
 * `Server-Timing` total (what the wire and both sides' HTTP handling add).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define ANSWER_BYTES 65536
#define LATE_NS 5000000LL /* the sweep's own tolerance (loadtests/scenarios/pacing.py) */
#define GRACE_NS 30000000000LL
#define TIMER_EVENT UINT64_MAX

typedef struct {
    int fd;
    long arrival; /* the request in flight, or -1 */
    size_t got;
    char answer[ANSWER_BYTES];
} connection;

typedef struct {
    long count;
    int64_t *latency_ns, *outside_ns; /* outside: latency less the Server-Timing total, or -1 */
    char *answered_ok;
} outcomes;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void fail(const char *what) {
    fprintf(stderr, "openloop: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The header's value when `c`'s head (up to `end`) has one named `name` (with the colon), else NULL. */
static const char *header(const connection *c, const char *end, const char *name) {
    size_t length = strlen(name);
    for (const char *line = strstr(c->answer, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, name, length) == 0) return line + 2 + length;
    return NULL;
}

/* 1 when `c` holds a whole answer (head and Content-Length body), 0 while more is to
 * come, -1 when it cannot be read. */
static int answer_complete(connection *c, size_t *head_bytes) {
    c->answer[c->got] = '\0';
    char *end = strstr(c->answer, "\r\n\r\n");
    if (!end) return c->got < ANSWER_BYTES - 1 ? 0 : -1;
    const char *length = header(c, end, "content-length:");
    size_t head = (size_t)(end - c->answer) + 4, body = length ? strtoul(length, NULL, 10) : 0;
    *head_bytes = head;
    if (head + body >= ANSWER_BYTES) return -1;
    return c->got >= head + body;
}

/* The arrival `c` carried: its latency, and, for a whole answer (`complete` > 0, its head
 * `head_bytes` long), whether it was a 200 and its latency less its Server-Timing total. */
static void record(outcomes *out, connection *c, int64_t scheduled_ns, int complete, size_t head_bytes) {
    int64_t latency = now_ns() - scheduled_ns, outside = -1;
    const char *end = c->answer + (complete > 0 ? head_bytes - 4 : 0);
    const char *timing = complete > 0 ? header(c, end, "server-timing:") : NULL;
    const char *total = timing ? strstr(timing, "total;dur=") : NULL;
    if (total && total < strstr(timing, "\r\n")) outside = latency - (int64_t)(strtod(total + 10, NULL) * 1e6);
    out->latency_ns[c->arrival] = latency;
    out->outside_ns[c->arrival] = outside;
    out->answered_ok[c->arrival] = complete > 0 && strncmp(c->answer, "HTTP/1.1 200", 12) == 0;
}

static int open_connection(const struct sockaddr_in *address, int epoll, int slot) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0 || connect(fd, (const struct sockaddr *)address, sizeof *address) < 0) fail("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event readable = {.events = EPOLLIN, .data.u64 = (uint64_t)slot};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &readable) < 0) fail("epoll_ctl");
    return fd;
}

static void drop_connection(connection *c, int epoll) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static double percentile_ms(int64_t *values, long count, int percent) {
    if (count == 0) return -1;
    qsort(values, (size_t)count, sizeof *values, by_value);
    return (double)values[(count - 1) * percent / 100] / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 9) {
        fprintf(stderr, "usage: openloop HOST PORT PATH BODY_FILE RATE SECONDS WARMUP_SHARE MAX_CONNECTIONS\n");
        return 2;
    }
    double rate = atof(argv[5]), seconds = atof(argv[6]), warmup = atof(argv[7]);
    int max_connections = atoi(argv[8]);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (rate <= 0 || seconds <= 0 || max_connections <= 0 || inet_pton(AF_INET, argv[1], &address.sin_addr) != 1) {
        fprintf(stderr, "openloop: HOST must be an IPv4 address; RATE, SECONDS, MAX_CONNECTIONS above 0\n");
        return 2;
    }
    FILE *file = fopen(argv[4], "rb");
    if (!file) fail(argv[4]);
    static char body[65536];
    size_t body_bytes = fread(body, 1, sizeof body, file);
    fclose(file);
    char *request = malloc(body_bytes + 1024);
    int request_bytes = sprintf(request,
        "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
        argv[3], argv[1], argv[2], body_bytes);
    memcpy(request + request_bytes, body, body_bytes);
    request_bytes += (int)body_bytes;

    long n = (long)(rate * seconds), due = 0, sent = 0, finished = 0, late = 0;
    outcomes out = {n, calloc((size_t)n, sizeof(int64_t)), calloc((size_t)n, sizeof(int64_t)), calloc((size_t)n, 1)};
    connection *connections = calloc((size_t)max_connections, sizeof *connections);
    int *idle = malloc(sizeof(int) * (size_t)max_connections), idle_count = 0, opened = 0;
    for (int slot = 0; slot < max_connections; slot++) connections[slot].fd = -1;
    int epoll = epoll_create1(0), timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event on_timer = {.events = EPOLLIN, .data.u64 = TIMER_EVENT};
    if (epoll < 0 || timer < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, timer, &on_timer) < 0) fail("epoll");
    int64_t interval = (int64_t)(1e9 / rate), start = now_ns() + 20000000LL;
    int64_t deadline = start + (int64_t)(seconds * 1e9) + GRACE_NS;

    while (finished < n && now_ns() < deadline) {
        int64_t now = now_ns();
        for (; due < n && start + due * interval <= now; due++)
            if (now - (start + due * interval) > LATE_NS) late++;
        while (sent < due && (idle_count > 0 || opened < max_connections)) {
            int slot = idle_count > 0 ? idle[--idle_count] : opened++;
            connection *c = &connections[slot];
            if (c->fd < 0) c->fd = open_connection(&address, epoll, slot);
            c->arrival = sent++;
            c->got = 0;
            if (send(c->fd, request, (size_t)request_bytes, MSG_NOSIGNAL) != request_bytes) {
                record(&out, c, start + c->arrival * interval, -1, 0);
                finished++;
                drop_connection(c, epoll);
                idle[idle_count++] = slot;
            }
        }
        if (due < n) {
            int64_t at = start + due * interval;
            struct itimerspec when = {.it_value = {at / 1000000000LL, at % 1000000000LL}};
            timerfd_settime(timer, TFD_TIMER_ABSTIME, &when, NULL);
        }
        struct epoll_event events[256];
        int ready = epoll_wait(epoll, events, 256, 100);
        for (int i = 0; i < ready; i++) {
            if (events[i].data.u64 == TIMER_EVENT) {
                uint64_t expirations;
                if (read(timer, &expirations, sizeof expirations) < 0 && errno != EAGAIN) fail("timerfd");
                continue;
            }
            int slot = (int)events[i].data.u64;
            connection *c = &connections[slot];
            if (c->fd < 0) continue; /* dropped earlier in this batch of events */
            ssize_t got = recv(c->fd, c->answer + c->got, ANSWER_BYTES - 1 - c->got, MSG_DONTWAIT);
            if (got < 0 && errno == EAGAIN) continue;
            if (c->arrival < 0) { /* an idle connection closed by the server: open anew when next needed */
                drop_connection(c, epoll);
                continue;
            }
            size_t head = 0;
            if (got > 0) c->got += (size_t)got;
            int complete = got > 0 ? answer_complete(c, &head) : -1;
            if (complete == 0) continue;
            record(&out, c, start + c->arrival * interval, complete, head);
            finished++;
            c->arrival = -1;
            if (complete < 0) drop_connection(c, epoll);
            idle[idle_count++] = slot;
        }
    }

    long answered = 0, measured = 0, timed = 0, first = (long)(warmup * (double)n);
    int64_t *latencies = malloc(sizeof(int64_t) * (size_t)n), *outsides = malloc(sizeof(int64_t) * (size_t)n);
    for (long i = 0; i < n; i++) {
        if (!out.answered_ok[i]) continue;
        answered++;
        if (i < first) continue;
        latencies[measured++] = out.latency_ns[i];
        if (out.outside_ns[i] >= 0) outsides[timed++] = out.outside_ns[i];
    }
    printf("{\"rate\": %.1f, \"sent\": %ld, \"answered\": %ld, \"failed\": %ld, \"late\": %ld, "
           "\"measured\": %ld, \"connections\": %d, \"p50_ms\": %.3f, \"p99_ms\": %.3f, ",
           rate, sent, answered, n - answered, late, measured, opened,
           percentile_ms(latencies, measured, 50), percentile_ms(latencies, measured, 99));
    printf("\"outside_p50_ms\": %.3f, \"outside_p99_ms\": %.3f}\n",
           percentile_ms(outsides, timed, 50), percentile_ms(outsides, timed, 99));
    return 0;
}
