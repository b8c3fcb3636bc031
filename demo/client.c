/* The demo's traffic: TCP request/reply and UDP datagrams, in functions netprof probes. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((noinline)) int send_request(int fd, int i) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "request %d ", i);
    memset(buf + n, 'x', sizeof buf - n);
    return send(fd, buf, sizeof buf, 0) == sizeof buf ? 0 : -1;
}

__attribute__((noinline)) int parse_reply(int fd) {
    char buf[512];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
        if (n <= 0) return -1;
        got += n;
    }
    return buf[0] == 'r' ? 0 : -1;
}

__attribute__((noinline)) int send_datagram(int fd, struct sockaddr_in *to, int i) {
    char buf[128];
    int n = snprintf(buf, sizeof buf, "datagram %d", i);
    return sendto(fd, buf, n, 0, (struct sockaddr *)to, sizeof *to) == n ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: client HOST PORT COUNT\n"); return 2; }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    int count = atoi(argv[3]);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(tcp, (struct sockaddr *)&to, sizeof to)) { perror("connect"); return 1; }
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    int errors = 0;
    for (int i = 0; i < count; i++) {
        errors += send_request(tcp, i) || parse_reply(tcp);
        errors += send_datagram(udp, &to, i);
        usleep(1000);
    }
    printf("%d requests, %d errors\n", count, errors);
    return errors != 0;
}
