// How far apart the host has put CPUs 0 and 1: the time for a cache line to go from one to the
// other and back, two threads taking turns on one atomic flag. On the 2-vCPU AMD Zen 4 VM of
// 2026-12-06 it read 52–110 ns or 320–390 ns, the placement changing every few seconds to
// minutes, and two-thread timings were ~1.6× slower under the second (benches/RESULTS.md,
// twenty-first session). Run it before a two-thread timing and keep the runs it calls near.
//
// Then how fast CPU 0 reads what CPU 1 has just written, against what it holds itself: CPU 1
// writes a 128 KiB buffer (a packed panel of the GEMM: 32 columns × k = 1024 floats), and CPU 0
// sums it three times, timing each pass. The first pass takes every cache line from CPU 1's
// cache; the second finds them in CPU 0's own; the third, after `clflush` has put every line out
// of every cache, reads them from memory. In a two-thread matrix product each thread packs part
// of an operand that both read, so each reads the other's part this way once (benches/
// RESULTS.md, thirty-fifth session).
//
//   gcc -O2 -march=native -pthread benches/core_round_trip.c -o /tmp/core_round_trip &&
//   /tmp/core_round_trip
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

#define ROUNDS 200000
#define FLOATS (32 * 1024)
#define STREAM_ROUNDS 201

static float buffer[FLOATS] __attribute__((aligned(64)));

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

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

// 16 partial sums, so that the adds do not wait on each other and the loads set the pace.
static float sum(const float *values) {
    float partial[16] = {0};
    for (int i = 0; i < FLOATS; i += 16) {
        for (int j = 0; j < 16; j++) {
            partial[j] += values[i + j];
        }
    }
    float total = 0;
    for (int j = 0; j < 16; j++) {
        total += partial[j];
    }
    return total;
}

// CPU 1 answers every odd value of `turn` by writing the buffer, then the next even value.
static void *writer(void *unused) {
    (void)unused;
    pin_to(1);
    for (int i = 0; i < STREAM_ROUNDS; i++) {
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 1) {
        }
        for (int j = 0; j < FLOATS; j++) {
            buffer[j] = (float)(i + j);
        }
        atomic_store_explicit(&turn, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The three reads of the buffer (see the top), medians printed.
static void stream(void) {
    static double from_other[STREAM_ROUNDS], own[STREAM_ROUNDS], memory[STREAM_ROUNDS];
    pthread_t other;
    volatile float sink = 0;
    atomic_store(&turn, 0);
    pthread_create(&other, NULL, writer, NULL);
    for (int i = 0; i < STREAM_ROUNDS; i++) {
        atomic_store_explicit(&turn, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&turn, memory_order_acquire) != 2 * i + 2) {
        }
        double start = now_ns();
        sink += sum(buffer);
        double middle = now_ns();
        sink += sum(buffer);
        own[i] = now_ns() - middle;
        from_other[i] = middle - start;
        for (int j = 0; j < FLOATS; j += 16) {
            _mm_clflush(&buffer[j]);
        }
        _mm_mfence();
        double flushed = now_ns();
        sink += sum(buffer);
        memory[i] = now_ns() - flushed;
    }
    pthread_join(other, NULL);
    qsort(from_other, STREAM_ROUNDS, sizeof(double), by_value);
    qsort(own, STREAM_ROUNDS, sizeof(double), by_value);
    qsort(memory, STREAM_ROUNDS, sizeof(double), by_value);
    double bytes = FLOATS * sizeof(float), theirs = from_other[STREAM_ROUNDS / 2],
           ours = own[STREAM_ROUNDS / 2], flushed = memory[STREAM_ROUNDS / 2];
    printf("128 KiB written by CPU 1, read by CPU 0: %.0f ns (%.1f GB/s); read again, from CPU "
           "0's own cache: %.0f ns (%.1f GB/s); from memory, flushed: %.0f ns (%.1f GB/s); "
           "medians of %d\n",
           theirs, bytes / theirs, ours, bytes / ours, flushed, bytes / flushed, STREAM_ROUNDS);
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
    stream();
    return 0;
}
