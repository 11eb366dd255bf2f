/* Calls sysinfo(2) in a loop for DURATION_MS and prints the number of calls and totalram. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double duration = (argc > 1 ? atof(argv[1]) : 1000) / 1000.0;
    struct sysinfo si;
    long calls = 0;
    double start = now();
    while (now() - start < duration) {
        if (sysinfo(&si) != 0) { perror("sysinfo"); return 1; }
        calls++;
    }
    printf("%ld %lu %.6f\n", calls, si.totalram * si.mem_unit, now() - start);
    return 0;
}
