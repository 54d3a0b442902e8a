/* instant: an HTTP/1.1 server that does no work. It answers every request at once with a
 * 200, an empty JSON object and `Server-Timing: total;dur=0`.
 *
 * openloop against it measures what no server can take away: the loopback path, and the
 * two wake-ups from idle a request costs on this machine. `perfserve bench-generator
 * --openloop` compiles it and runs the "wire" row. That row is the floor under the
 * "added" figures, which are latency less a server's own Server-Timing total.
 *
 *   instant PORT      (0 picks a free port; prints "listening PORT" once bound)
 *
 * One thread, one epoll loop, keep-alive connections, bodies read by Content-Length.
 * Loopback only. It runs until it is killed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUEST_BYTES 65536
#define MAX_CONNECTIONS 4096

static const char ANSWER[] =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
    "server-timing: total;dur=0\r\n\r\n{}";

typedef struct {
    size_t got;
    char request[REQUEST_BYTES];
} connection;

/* The bytes of the first whole request in `c` (head and Content-Length body), 0 while
 * more is to come, -1 when it cannot be read. */
static long whole_request(connection *c) {
    c->request[c->got] = '\0';
    char *end = strstr(c->request, "\r\n\r\n");
    if (!end) return c->got < REQUEST_BYTES - 1 ? 0 : -1;
    size_t head = (size_t)(end - c->request) + 4, body = 0;
    for (char *line = strstr(c->request, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "content-length:", 15) == 0) body = strtoul(line + 17, NULL, 10);
    if (head + body >= REQUEST_BYTES) return -1;
    return c->got >= head + body ? (long)(head + body) : 0;
}

/* Reads what `fd` has and answers each whole request in it; 0 when the connection is done. */
static int serve(int fd, connection *c) {
    ssize_t got = recv(fd, c->request + c->got, REQUEST_BYTES - 1 - c->got, 0);
    if (got <= 0) return 0;
    c->got += (size_t)got;
    long used;
    while ((used = whole_request(c)) > 0) {
        if (send(fd, ANSWER, sizeof ANSWER - 1, MSG_NOSIGNAL) != sizeof ANSWER - 1) return 0;
        memmove(c->request, c->request + used, c->got - (size_t)used);
        c->got -= (size_t)used;
    }
    return used == 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: instant PORT\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof address;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&address, size) < 0 || listen(listener, 1024) < 0 ||
        getsockname(listener, (struct sockaddr *)&address, &size) < 0) {
        perror("instant: bind");
        return 2;
    }
    printf("listening %d\n", ntohs(address.sin_port));
    fflush(stdout);
    int epoll = epoll_create1(0);
    struct epoll_event on_listener = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &on_listener);
    connection **connections = calloc(MAX_CONNECTIONS, sizeof *connections);
    for (;;) {
        struct epoll_event events[256];
        int ready = epoll_wait(epoll, events, 256, -1);
        for (int i = 0; i < ready; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                int client = accept(listener, NULL, NULL);
                if (client < 0) continue;
                if (client >= MAX_CONNECTIONS) {
                    close(client);
                    continue;
                }
                setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                if (!connections[client]) connections[client] = malloc(sizeof(connection));
                connections[client]->got = 0;
                struct epoll_event readable = {.events = EPOLLIN, .data.fd = client};
                epoll_ctl(epoll, EPOLL_CTL_ADD, client, &readable);
            } else if (!serve(fd, connections[fd])) {
                epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
}
