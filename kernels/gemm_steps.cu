// The matrix product C = A · B (A [m, k], B [k, n], C [m, n], row-major) in three steps, from
// the simplest kernel that is right to the core that gemm.cu is built on. Read them before
// gemm.cu: each step keeps what the one before it does and adds one idea. The engine's own
// products never run them; tests/gemm_steps.rs checks them against the CPU on the emulator,
// and `cargo bench --bench cuda -- gemm_steps` times them beside gemm.cu's kernels on a GPU
// (src/backend/cuda/gemm_steps.rs launches them).
//
// What decides the speed, in the order the steps meet it:
// 1. Global memory is far away (~500 cycles) and moves 32-byte sectors: the 32 threads of a
//    warp should read neighbouring addresses, so that one sector serves eight of them.
// 2. Each element of A and B is needed by a whole row or column of C: read it from global
//    memory once per tile of C, into shared memory (~30 cycles), not once per element of C.
// 3. Shared memory is still slower than registers, and a multiply-add needs two operands: a
//    thread that computes a 4 × 4 patch of C reads 8 values per 16 multiply-adds, not 32.
// gemm.cu then keeps the next slices of A and B on their way while it multiplies one (a
// cp.async pipeline), splits long k across blocks for small products, and for large ones
// (gemm_large) gives each warp a 64 × 32 tile of C whose operands it reads without bank
// conflicts.

struct GemmStepArgs {
    const float* a;
    const float* b;
    float* c;
    int m;
    int k;
    int n;
};

// Step 1: one thread per element of C, every operand read from global memory.
// Launch: 16 × 16 threads a block, grid (ceil(n / 16), ceil(m / 16)).
//
// threadIdx.x runs along a row of C, so the 32 threads of a warp (16 columns of 2 rows) read
// B[p, col] at neighbouring addresses (point 1 above), and A[row, p] at one of two addresses,
// which every thread of a half-warp shares (a broadcast). Each thread reads 2k floats for
// its 2k flops: the GPU waits on memory nearly all the time.
FG_KERNEL(gemm_step_naive, GemmStepArgs) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= args.m || col >= args.n) {
        return;  // no barrier below: a thread may leave early
    }
    float sum = 0.0f;
    for (int p = 0; p < args.k; ++p) {
        sum += args.a[(u64)row * args.k + p] * args.b[(u64)p * args.n + col];
    }
    args.c[(u64)row * args.n + col] = sum;
}

// Step 2: 16 × 16 tiles of A and B in shared memory.
// Launch: as step 1.
//
// A block computes a 16 × 16 tile of C. It walks k in slices of 16: each thread copies one
// element of A's 16 × 16 slice and one of B's into shared memory, the block waits until all
// are there (__syncthreads), then every thread reads its row of A's slice and its column of
// B's from shared memory. Each element fetched from global memory now serves 16 threads
// (point 2). The second barrier keeps a fast thread from overwriting the slice while others
// still read it. Elements past the edges of A and B are copied as 0, so ragged shapes need
// no other check until the store.
#define STEP2_TILE 16

FG_KERNEL(gemm_step_shared, GemmStepArgs) {
    __shared__ float a_tile[STEP2_TILE][STEP2_TILE];
    __shared__ float b_tile[STEP2_TILE][STEP2_TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int col = blockIdx.x * STEP2_TILE + tx;
    const int row = blockIdx.y * STEP2_TILE + ty;
    float sum = 0.0f;
    for (int k0 = 0; k0 < args.k; k0 += STEP2_TILE) {
        // Neighbouring threads copy neighbouring elements of a row of A and of B.
        const int a_col = k0 + tx, b_row = k0 + ty;
        a_tile[ty][tx] = row < args.m && a_col < args.k ? args.a[(u64)row * args.k + a_col] : 0.0f;
        b_tile[ty][tx] = b_row < args.k && col < args.n ? args.b[(u64)b_row * args.n + col] : 0.0f;
        __syncthreads();  // the slice is complete
        for (int p = 0; p < STEP2_TILE; ++p) {
            sum += a_tile[ty][p] * b_tile[p][tx];
        }
        __syncthreads();  // everyone is done with it before it is overwritten
    }
    if (row < args.m && col < args.n) {
        args.c[(u64)row * args.n + col] = sum;
    }
}

// Step 3: 64 × 64 tiles, a 4 × 4 patch of C per thread, accumulated in registers.
// Launch: 256 threads a block, grid (ceil(n / 64), ceil(m / 64)).
//
// Thread (tx, ty) = (t % 16, t / 16) owns rows 4·ty.. and columns 4·tx.. of the tile. For each
// p of a 16-deep slice it reads 4 values of A's column p and 4 of B's row p from shared memory,
// as one 16-byte read each (float4), and does the 16 multiply-adds of their outer product
// (point 3): 8 shared reads per 16 multiply-adds instead of 32, and 16 independent sums, so
// the multiply-adds need not wait for one another. A is stored in shared memory transposed
// (a_tile[p][row]) so that a thread's 4 rows are one float4. Its rows are padded by 4 floats:
// the 16 threads that copy a row of A write a_tile[0..16][row], 64 floats apart without the
// padding, all in one of shared memory's 32 banks (16 writes one after another); 68 apart,
// they spread over 8 banks.
// gemm.cu's `gemm` is this kernel plus a pipeline of slices in flight, split-K and epilogues.
#define STEP3_TILE 64
#define STEP3_DEPTH 16
#define STEP3_PAD 4

FG_KERNEL(gemm_step_registers, GemmStepArgs) {
    __shared__ __align__(16) float a_tile[STEP3_DEPTH][STEP3_TILE + STEP3_PAD];
    __shared__ __align__(16) float b_tile[STEP3_DEPTH][STEP3_TILE];
    const int t = threadIdx.x;
    const int tx = t % 16, ty = t / 16;
    const int row0 = blockIdx.y * STEP3_TILE, col0 = blockIdx.x * STEP3_TILE;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < args.k; k0 += STEP3_DEPTH) {
        // 64 × 16 elements of each operand, 4 per thread; neighbouring threads read
        // neighbouring addresses (along k in A's rows, along n in B's).
        for (int i = 0; i < 4; ++i) {
            const int e = t + i * 256;
            const int a_row = e / STEP3_DEPTH, a_p = e % STEP3_DEPTH;
            const int row = row0 + a_row, a_col = k0 + a_p;
            a_tile[a_p][a_row] =
                row < args.m && a_col < args.k ? args.a[(u64)row * args.k + a_col] : 0.0f;
            const int b_p = e / STEP3_TILE, b_col = e % STEP3_TILE;
            const int b_row = k0 + b_p, col = col0 + b_col;
            b_tile[b_p][b_col] =
                b_row < args.k && col < args.n ? args.b[(u64)b_row * args.n + col] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int p = 0; p < STEP3_DEPTH; ++p) {
            const float4 a4 = *(const float4*)&a_tile[p][4 * ty];
            const float4 b4 = *(const float4*)&b_tile[p][4 * tx];
            const float a[4] = {a4.x, a4.y, a4.z, a4.w}, b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
            for (int i = 0; i < 4; ++i) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    acc[i][j] += a[i] * b[j];
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int row = row0 + 4 * ty + i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int col = col0 + 4 * tx + j;
            if (row < args.m && col < args.n) {
                args.c[(u64)row * args.n + col] = acc[i][j];
            }
        }
    }
}
