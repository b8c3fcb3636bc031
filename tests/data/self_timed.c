/* The ground truth for span durations: functions that time themselves from inside, with
   clock_gettime around a busy-wait of known length, nested three deep with 10 children per
   parent. Run as: self_timed CALLS LEAF_NS; prints, per level, the mean and the median of the
   durations its own clock saw, in ns. Unprobed, that is the truth a profiler's durations are
   held to. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long leaf_ns, own_ns;
static long *seen[3];
static long count[3];

static inline long now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void spin(long ns)
{
    long end = now() + ns;
    while (now() < end)
        ;
}

__attribute__((noinline)) void leaf(void)
{
    long t = now();
    spin(leaf_ns);
    seen[2][count[2]++] = now() - t;
}

__attribute__((noinline)) void mid(void)
{
    long t = now();
    spin(own_ns);
    for (int i = 0; i < 10; i++)
        leaf();
    seen[1][count[1]++] = now() - t;
}

__attribute__((noinline)) void top(void)
{
    long t = now();
    spin(own_ns);
    for (int i = 0; i < 10; i++)
        mid();
    seen[0][count[0]++] = now() - t;
}

static int by_value(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const char *names[3] = {"top", "mid", "leaf"};
    int calls = argc > 1 ? atoi(argv[1]) : 100;
    leaf_ns = argc > 2 ? atol(argv[2]) : 2000;
    own_ns = leaf_ns / 2;
    for (int level = 0, n = calls; level < 3; level++, n *= 10)
        seen[level] = malloc(n * sizeof(long));
    for (int i = 0; i < calls; i++)
        top();
    for (int level = 0; level < 3; level++) {
        double sum = 0;
        for (long i = 0; i < count[level]; i++)
            sum += seen[level][i];
        qsort(seen[level], count[level], sizeof(long), by_value);
        printf("%s %.1f %ld\n", names[level], sum / count[level], seen[level][(count[level] - 1) / 2]);
    }
    return 0;
}
