// Kernels that break CUDA's rules on purpose, compiled for the emulator only (never by NVRTC),
// so that tests/emulator.rs can check that the emulator catches each mistake our kernels could
// make, rather than pass it by luck. Part of the emulator's translation unit.

// y[t] = x[(t + 1) % threads], through shared memory: each thread stores its own value and
// reads its neighbour's, after a barrier when p != 0. Without it the read races with the
// neighbour's store — which the emulator shows as results that depend on the thread order.
FG_KERNEL(emulator_check_neighbour_read, UnaryArgs) {
    __shared__ float values[1024];
    const u32 t = threadIdx.x;
    values[t] = args.x[t];
    if (args.p != 0.0f) {
        __syncthreads();
    }
    args.y[t] = values[(t + 1) % blockDim.x];
}

// Each block's y = the shared value block 0's thread 0 stores (x[0]): later blocks read
// shared memory nothing in their block wrote, which on a GPU holds whatever was there. Its
// launch bounds (128 threads) are for checking that a launch past them is refused.
FG_KERNEL(emulator_check_unwritten_shared, UnaryArgs, __launch_bounds__(128, 1)) {
    __shared__ float value;
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        value = args.x[0];
    }
    __syncthreads();
    args.y[blockIdx.x * blockDim.x + threadIdx.x] = value;
}

// Barriers some threads never reach, by mode p: 0 none (every thread at __syncthreads, then
// y = x), 1 threads from n on return before __syncthreads, 2 lanes from n on return before a
// warp shuffle, 3 lanes from n wait at __syncthreads while the others shuffle.
FG_KERNEL(emulator_check_barriers, UnaryArgs) {
    const u32 t = threadIdx.x;
    const int mode = (int)args.p;
    float value = args.x[t];
    if (mode == 1 && t >= args.n) return;
    if (mode == 2 && t >= args.n) return;
    if (mode == 3 && t >= args.n) {
        __syncthreads();
    } else if (mode >= 2) {
        value = __shfl_xor_sync(0xffffffffu, value, 1);
    } else {
        __syncthreads();
    }
    args.y[t] = value;
}

// A rendezvous of the launch's blocks, as split-K's: each thread stores its x to y[1 + i], then
// thread 0 counts its block in at the counter y[0] (0 bits to start), after a barrier when
// p != 0; the block that counts in last sums every block's stores into y[1 + all threads].
// Without the barrier, a block can count in before its other threads have stored, and the
// last block sum what is not there yet — which interleaved blocks show.
FG_KERNEL(emulator_check_early_arrival, UnaryArgs) {
    __shared__ int last;
    u32* counter = (u32*)args.y;
    float* stored = args.y + 1;
    const u32 all = gridDim.x * blockDim.x, i = blockIdx.x * blockDim.x + threadIdx.x;
    stored[i] = args.x[i];
    if (args.p != 0.0f) {
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        last = arrive_acq_rel(counter) == gridDim.x - 1;
    }
    __syncthreads();
    if (last && threadIdx.x == 0) {
        float total = 0.0f;
        for (u32 j = 0; j < all; ++j) {
            total += stored[j];
        }
        stored[all] = total;
    }
}

// Bank conflicts on purpose, for the counts of shared_trace.cpp (tests/bank_conflicts.rs):
// one warp fills `values` (each store 32 consecutive floats: no conflict), then each lane
// loads n floats (1, 2 or 4: one 4-, 8- or 16-byte load) from element lane · p, and writes
// their sum to y[lane]. Stride 1 takes one wavefront, 2 two (lanes l and l + 16 share a bank),
// 32 thirty-two, 33 one again; stride 0 is a broadcast.
#define BANK_CHECK_FLOATS (32 * 33 + 4)
FG_KERNEL(emulator_check_bank_stride, UnaryArgs) {
    __shared__ __align__(16) float values[BANK_CHECK_FLOATS];
    const u32 lane = threadIdx.x, at = lane * (u32)args.p;
    for (u32 i = lane; i < BANK_CHECK_FLOATS; i += 32) {
        values[i] = args.x[i % 32];
    }
    __syncwarp();
    float sum;
    if (args.n == 4) {
        const float4 v = *(const float4*)&values[at];
        sum = v.x + v.y + v.z + v.w;
    } else if (args.n == 2) {
        const float2 v = *(const float2*)&values[at];
        sum = v.x + v.y;
    } else {
        sum = values[at];
    }
    args.y[lane] = sum;
}

// The lanes of a warp going different ways (shared_trace.cpp's count_diverged): after the
// fill above, lanes 0–15 load a float2 at element 2·l·(i + 1) for i < n, one place in the
// code run n times (request i of that place: words 0–31, one wavefront; then lanes l and l + 8
// share banks, two), lanes 16–31 one float at element 32·(l − 16) (a column: sixteen in bank
// 0, sixteen wavefronts), and then every lane one float at element l (one wavefront). Each
// lane writes the sum of what it loaded to y[lane].
FG_KERNEL(emulator_check_bank_divergent, UnaryArgs) {
    __shared__ __align__(16) float values[BANK_CHECK_FLOATS];
    const u32 lane = threadIdx.x;
    for (u32 i = lane; i < BANK_CHECK_FLOATS; i += 32) {
        values[i] = args.x[i % 32];
    }
    __syncwarp();
    float sum = 0.0f;
    if (lane < 16) {
#pragma GCC unroll 1
        for (u32 i = 0; i < (u32)args.n; ++i) {
            const float2 v = *(const float2*)&values[2 * lane * (i + 1)];
            sum += v.x + v.y;
        }
    } else {
        sum = values[32 * (lane - 16)];
    }
    args.y[lane] = sum + values[lane];
}
