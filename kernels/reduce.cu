// Reductions. Both are deterministic: every sum runs in a fixed order (fixed chunks, fixed
// shuffle and shared-memory trees), never through atomics, so a seed gives the same bits run
// to run.

// Threads per block of the reductions; a power of two, as the tree needs.
#define REDUCE_THREADS 256
// Elements per block in the first pass of sum_all (the CPU backend's SUM_CHUNK).
#define SUM_CHUNK 4096

struct SumArgs {
    const float* x;
    const float* y;    // a map's second operand (sum_<map>), else unused
    double* partials;  // one per block of the first pass
    float* out;        // one value: scale · the sum
    u64 n;
    u64 blocks;        // first-pass blocks, ceil(n / SUM_CHUNK)
    float scale;       // 1 for a sum, 1 / n for a mean; the f32 sum times scale is written
};

// Sums `value` over a warp by shuffling down: lane 0 gets the total.
__device__ __forceinline__ double warp_sum(double value) {
    for (int offset = 16; offset > 0; offset /= 2) {
        value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    return value;
}

// Sums `value` over the block: each warp by shuffles, then the warps' sums by warp 0, always
// in the same order. Thread 0 gets the total.
__device__ __forceinline__ double block_sum(double value) {
    __shared__ double warp_sums[REDUCE_THREADS / 32];
    const u32 lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    value = warp_sum(value);
    if (lane == 0) {
        warp_sums[warp] = value;
    }
    __syncthreads();
    double total = 0.0;
    if (warp == 0) {
        total = warp_sum(lane < REDUCE_THREADS / 32 ? warp_sums[lane] : 0.0);
    }
    __syncthreads();  // warp_sums is reused by the next call
    return total;
}

// Pass 1: block b sums value(i) over elements [b·SUM_CHUNK, (b + 1)·SUM_CHUNK) in f64. With a
// single block (n ≤ SUM_CHUNK: a loss over a batch) its sum is the total, written right away,
// and the host launches no second pass.
template <typename Value>
__device__ __forceinline__ void sum_partials_of(const SumArgs& args, Value value) {
    u64 start = (u64)blockIdx.x * SUM_CHUNK;
    u64 end = start + SUM_CHUNK < args.n ? start + SUM_CHUNK : args.n;
    double sum = 0.0;
    for (u64 i = start + threadIdx.x; i < end; i += REDUCE_THREADS) {
        sum += (double)value(i);
    }
    double total = block_sum(sum);
    if (threadIdx.x == 0) {
        if (args.blocks == 1) {
            args.out[0] = (float)total * args.scale;
        } else {
            args.partials[blockIdx.x] = total;
        }
    }
}

// The elements of x.
FG_KERNEL(sum_partials, SumArgs) {
    sum_partials_of(args, [&](u64 i) { return args.x[i]; });
}

// A map summed as it is computed, sum_<map>(x, y): the sum of the map's f32 values in the order
// sum_partials would sum them once written out (the same bits), without writing them out or a
// launch to do so. The loss of binary_cross_entropy (x the predictions, y the targets).
FG_KERNEL(sum_bce_loss, SumArgs) {
    sum_partials_of(args, [&](u64 i) { return bce_loss(args.x[i], args.y[i]); });
}

// Pass 2, one block: the partial sums, in order of blocks per thread, then the tree.
FG_KERNEL(sum_finish, SumArgs) {
    double sum = 0.0;
    for (u64 i = threadIdx.x; i < args.blocks; i += REDUCE_THREADS) {
        sum += args.partials[i];
    }
    double total = block_sum(sum);
    if (threadIdx.x == 0) {
        args.out[0] = (float)total * args.scale;
    }
}

struct SumRowsArgs {
    const float* x;  // [rows, cols]
    float* out;      // [cols]
    u64 rows;
    u64 cols;
};

// Column sums (a bias gradient): one thread per column walks the rows in order; neighbouring
// threads read neighbouring addresses.
FG_KERNEL(sum_rows, SumRowsArgs) {
    for (u64 col = global_thread(); col < args.cols; col += grid_stride()) {
        float sum = 0.0f;
        for (u64 row = 0; row < args.rows; ++row) {
            sum += args.x[row * args.cols + col];
        }
        args.out[col] = sum;
    }
}
