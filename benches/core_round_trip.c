// How far apart the host has put CPUs 0 and 1: the time for a cache line to go from one to the
// other and back, two threads taking turns on one atomic flag. On the 2-vCPU AMD Zen 4 VM of
// 2026-12-06 it read 52–110 ns or 320–390 ns, the placement changing every few seconds to
// minutes, and two-thread timings were ~1.6× slower under the second (benches/RESULTS.md,
// twenty-first session). Run it before a two-thread timing and keep the runs it calls near.
//
//   gcc -O2 -pthread benches/core_round_trip.c -o /tmp/core_round_trip && /tmp/core_round_trip
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#define ROUNDS 200000

static _Atomic int turn __attribute__((aligned(64)));

static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// CPU 1 answers every odd value of `turn` with the next even one.
static void *answer(void *unused) {
    (void)unused;
    pin_to(1);
    for (int i = 0; i < ROUNDS; i++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 1) {
        }
        atomic_store_explicit(&turn, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

int main(void) {
    pthread_t other;
    struct timespec start, end;
    pin_to(0);
    pthread_create(&other, NULL, answer, NULL);
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 0; i < ROUNDS; i++) {
        atomic_store_explicit(&turn, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 2) {
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    pthread_join(other, NULL);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%.0f ns a round trip between CPUs 0 and 1\n", ns / ROUNDS);
    return 0;
}
