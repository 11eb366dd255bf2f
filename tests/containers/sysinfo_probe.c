/* Prints what sysinfo(2) says, one "key value" per line (a glibc program, built static). */
#include <stdio.h>
#include <sys/sysinfo.h>
#include <unistd.h>

int main(void) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) { perror("sysinfo"); return 1; }
    printf("uptime %ld\n", si.uptime);
    printf("totalram %lu\n", si.totalram * si.mem_unit);
    printf("freeram %lu\n", si.freeram * si.mem_unit);
    printf("totalswap %lu\n", si.totalswap * si.mem_unit);
    printf("procs %u\n", si.procs);
    printf("load1 %lu\n", si.loads[0]);
    printf("phys_pages_bytes %ld\n", sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE));
    printf("nprocessors_onln %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    return 0;
}
