/* Benchmark reader: open + read to EOF + close, in a loop, timing each round.
 *
 * usage: reader PATH DURATION_MS LATENCY_FILE [CGROUP_LIST READS_PER_CGROUP]
 *
 * Waits for one byte on stdin before starting, so the harness can place it in
 * a cgroup and start every reader together.  Each round's latency (ns, uint64)
 * goes to LATENCY_FILE; the number of rounds and of bytes read per round is
 * printed on stdout.  With CGROUP_LIST (one line per cgroup: its cgroup.procs
 * files separated by ';'), the reader moves itself to the next cgroup every
 * READS_PER_CGROUP rounds; the move is not timed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static char **cgroups;
static size_t n_cgroups;

static void load_cgroups(const char *list) {
    FILE *f = fopen(list, "r");
    if (!f) { perror(list); exit(2); }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n') line[len - 1] = 0;
        if (!*line) continue;
        cgroups = realloc(cgroups, (n_cgroups + 1) * sizeof(char *));
        cgroups[n_cgroups++] = strdup(line);
    }
    free(line);
    fclose(f);
}

static void join(size_t i) {
    char *spec = strdup(cgroups[i % n_cgroups]);
    for (char *tok = strtok(spec, ";"); tok; tok = strtok(NULL, ";")) {
        int fd = open(tok, O_WRONLY);
        if (fd < 0 || write(fd, "0", 1) != 1) { perror(tok); exit(2); }
        close(fd);
    }
    free(spec);
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: %s PATH DURATION_MS LATENCY_FILE [CGROUP_LIST READS_PER_CGROUP]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    uint64_t duration = strtoull(argv[2], NULL, 10) * 1000000ull;
    long per_cgroup = 0;
    if (argc == 6) { load_cgroups(argv[4]); per_cgroup = strtol(argv[5], NULL, 10); }
    size_t cap = 1 << 16, n = 0;
    uint64_t *lat = malloc(cap * sizeof(uint64_t));
    char buf[65536];
    char go;
    if (read(0, &go, 1) != 1) return 2;
    size_t next_cgroup = 0;
    if (n_cgroups) join(next_cgroup++);
    long bytes = 0;
    uint64_t start = now_ns(), end = start + duration;
    for (;;) {
        uint64_t t0 = now_ns();
        if (t0 >= end) break;
        int fd = open(path, O_RDONLY);
        if (fd < 0) { perror(path); return 1; }
        long total = 0;
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0) total += r;
        if (r < 0) { perror("read"); return 1; }
        close(fd);
        uint64_t t1 = now_ns();
        if (n == cap) { cap *= 2; lat = realloc(lat, cap * sizeof(uint64_t)); }
        lat[n++] = t1 - t0;
        bytes = total;
        if (n_cgroups && per_cgroup > 0 && n % per_cgroup == 0) join(next_cgroup++);
    }
    FILE *out = fopen(argv[3], "wb");
    if (!out || fwrite(lat, sizeof(uint64_t), n, out) != n) { perror(argv[3]); return 1; }
    fclose(out);
    printf("%zu %ld\n", n, bytes);
    return 0;
}
