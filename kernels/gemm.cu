// C[m, n] = epilogue(op(A)[m, k] · op(B)[k, n] (+ bias[n] on every row)), the three products
// a linear layer needs (X·Wᵀ, dY·W, dYᵀ·X) without materialising a transpose: A is stored
// [m, k] or, when lhs_transposed, [k, m]; B is stored [k, n] or, when rhs_transposed, [n, k].
// The epilogue is the identity or an activation (GEMM_EPILOGUE_*), applied as each result
// leaves its register, optionally followed by inverted dropout (the mask drawn right there, from
// Philox, and written beside C for the backward pass): a training-mode linear layer, its
// activation and its dropout in one kernel. Backward, the left operand can be read through an
// activation's backward rule (GEMM_LHS_RULE_*, the prologue): a fused layer's ∂L/∂z =
// act'(y) · (∂L/∂y · mask) computed as its two products load ∂L/∂y, so ∂L/∂z never goes
// through memory and costs no launch of its own.
//
// Two kernels, chosen by the host for the shape (src/backend/cuda/launch.rs, GemmPlan), and an
// optional third, gemm_tf32, for tensor cores (below):
// - gemm: 64 × 64 tiles of C, 256 threads, 4 × 4 results per thread. For the small products of
//   a batch-64 MLP, where 128 × 128 tiles would leave most of the GPU idle. A product with a
//   long k and few tiles (64 × 1024 · 1024 × 784) is split along k (gridDim.z > 1) to keep
//   many SMs busy instead of 13: each block sums k_chunk of k into a partial tile, and the
//   last block of a tile to finish adds the partials in a fixed order (deterministic, unlike
//   atomic sums) and applies bias and epilogue — split-K in one launch (split_k_last_arrival).
//   The k-slices stream into shared memory through a 4-deep cp.async pipeline
//   (Pipeline), so a block waits for memory once, not once per slice. gemm_pair runs two
//   such products in one launch (a layer's input gradient beside its weight gradient).
// - gemm_large: 128 × 128 tiles, 8 warps of 64 × 32, 8 × 8 results per thread, k-slices
//   through the same pipeline (3 stages of 8). For large products (4096³), where the
//   arithmetic per byte of shared memory traffic decides the speed.

#define GEMM_EPILOGUE_NONE 0
#define GEMM_EPILOGUE_RELU 1
#define GEMM_EPILOGUE_LEAKY_RELU 2
#define GEMM_EPILOGUE_TANH 3
#define GEMM_EPILOGUE_SIGMOID 4

// The rules a product can read its left operand through (src/backend/cuda/args.rs,
// lhs_rule_code): the backward rules of the activations above, by the names of their Rust
// kernels (relu_backward, …).
#define GEMM_LHS_RULE_NONE 0
#define GEMM_LHS_RULE_RELU 1
#define GEMM_LHS_RULE_LEAKY_RELU 2
#define GEMM_LHS_RULE_TANH 3
#define GEMM_LHS_RULE_SIGMOID 4

struct GemmArgs {
    const float* a;
    const float* b;
    const float* bias;  // null for none
    float* c;
    float* partials;    // split-K: [splits, m, n] partial sums; null otherwise
    // Split-K: one counter per tile (tiles_x · tiles_y of them), 0 before the launch and
    // after it (split_k_last_arrival).
    u32* tile_counters;
    int m;
    int k;
    int n;
    int lhs_transposed;
    int rhs_transposed;
    int k_chunk;        // the k each block sums (k itself without split-K)
    int epilogue;       // GEMM_EPILOGUE_*
    float p;            // the epilogue's parameter (LeakyReLU's slope)
    float dropout_p;    // with `mask`: the probability of dropping an element
    // Null for no dropout. Else C[i] = epilogue(…) · mask[i], mask[i] value i of `dropout`, a
    // draw of dropout masks: the very mask random_fill would have drawn, kept for the backward.
    float* mask;
    PhiloxDraw dropout;
    // Null, or [m]: gemm and gemm_tf32 (without split-K) also write Σ_k op(A)[row, k] here,
    // from the A tiles they read anyway: a weight gradient (∂L/∂z)ᵀ·x and its bias gradient
    // Σ_rows ∂L/∂z in one kernel. Summed in k order in f32, as the CPU's and sum_rows' column
    // sums.
    float* row_sums;
    // GEMM_LHS_RULE_NONE, or A is read through a backward rule: each element a of A becomes
    // rule(saved, a · mask) (gemm_lhs_rule), `lhs_saved` and `lhs_mask` (null: no dropout)
    // stored as A is; lhs_rule_p is the rule's parameter (LeakyReLU's slope). The tiled
    // kernels (gemm, gemm_small, the pairs, gemm_tf32) apply it (Pipeline); the host sends no
    // such product to gemm_large or gemv.
    const float* lhs_saved;
    const float* lhs_mask;
    int lhs_rule;
    float lhs_rule_p;
};

// Where a block of a tiled kernel works: the tile of C in column x and row y of the grid of
// tiles (tiles_x per row), and chunk z of k out of `splits`. A `gemm` launch's blocks are its
// grid; a `gemm_pair` launch's are two such grids one after the other (gemm_pair).
struct GemmTile {
    int x, y, z;
    int tiles_x, splits;
};

__device__ __forceinline__ GemmTile grid_tile() {
    return GemmTile{(int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z, (int)gridDim.x,
                    (int)gridDim.z};
}

__device__ __forceinline__ float gemm_epilogue(const GemmArgs& args, float x) {
    switch (args.epilogue) {
        case GEMM_EPILOGUE_RELU: return relu_forward(x);
        case GEMM_EPILOGUE_LEAKY_RELU: return leaky_relu_forward(x, args.p);
        case GEMM_EPILOGUE_TANH: return tanh_forward(x);
        case GEMM_EPILOGUE_SIGMOID: return sigmoid_forward(x);
        default: return x;
    }
}

// ∂L/∂z from one element g = ∂L/∂y of A through rule RULE (GEMM_LHS_RULE_*): dropout's rule,
// then the activation's — rule(saved, g · mask), the order of the unfused ops (mask is 1
// without dropout, and g · 1 = g exactly). A template, so that a caller switches on the rule
// once for a whole quad, not once per element.
template <int RULE>
__device__ __forceinline__ float gemm_lhs_rule(const GemmArgs& args, float saved, float mask,
                                               float g) {
    const float through_dropout = g * mask;
    if constexpr (RULE == GEMM_LHS_RULE_RELU) {
        return relu_backward(saved, through_dropout);
    } else if constexpr (RULE == GEMM_LHS_RULE_LEAKY_RELU) {
        return leaky_relu_backward(saved, through_dropout, args.lhs_rule_p);
    } else if constexpr (RULE == GEMM_LHS_RULE_TANH) {
        return tanh_backward(saved, through_dropout);
    } else if constexpr (RULE == GEMM_LHS_RULE_SIGMOID) {
        return sigmoid_backward(saved, through_dropout);
    } else {
        return through_dropout;
    }
}

// C[at] (in column `col`) = epilogue(sum + bias[col]), times mask[at] under dropout.
__device__ __forceinline__ void gemm_finish(const GemmArgs& args, u64 at, int col, float sum) {
    float bias = args.bias ? args.bias[col] : 0.0f;
    float value = gemm_epilogue(args, sum + bias);
    if (args.mask) {
        float keep = dropout_mask_at(philox_resolve(args.dropout), args.dropout_p, at);
        args.mask[at] = keep;
        value *= keep;
    }
    args.c[at] = value;
}

// a[r] = a[r + 1] for every row but the last: a loop that is not unrolled can work on row 0 of a
// thread's results each time round, then move the next row up. It indexes the array only at
// constants, so the array stays in registers (indexed at run time it would go to local memory,
// each access a round trip through L1), and the code in the loop is there once, not once per
// row (unrolled: longer NVRTC compiles and more instructions to fetch for a short-lived block).
template <int ROWS, int COLS>
__device__ __forceinline__ void shift_rows_up(float (&a)[ROWS][COLS]) {
#pragma unroll
    for (int r = 0; r + 1 < ROWS; ++r) {
#pragma unroll
        for (int c = 0; c < COLS; ++c) {
            a[r][c] = a[r + 1][c];
        }
    }
}

template <class T, int ROWS>
__device__ __forceinline__ void shift_rows_up(T (&a)[ROWS]) {
#pragma unroll
    for (int r = 0; r + 1 < ROWS; ++r) {
        a[r] = a[r + 1];
    }
}

// Writes one result: the finished value, or a partial sum of k-chunk `split` under split-K.
__device__ __forceinline__ void gemm_store(const GemmArgs& args, int split, int row, int col,
                                           float acc) {
    if (row >= args.m || col >= args.n) {
        return;
    }
    u64 at = (u64)row * args.n + col;
    if (args.partials) {
        args.partials[(u64)split * args.m * args.n + at] = acc;
    } else {
        gemm_finish(args, at, col, acc);
    }
}

// C[at..at + 4] (columns col..col + 3) = epilogue(sum + bias), times the dropout mask: gemm_finish
// for a quad of one row with `at` a multiple of 4 (16-byte aligned) — two 16-byte stores, and
// the quad's four mask values from one Philox block (values at..at + 3 of the draw are its four
// lanes) instead of one block each.
__device__ __forceinline__ void gemm_finish_quad(const GemmArgs& args, u64 at, int col,
                                                 const float sum[4]) {
    float value[4];
    for (int q = 0; q < 4; ++q) {
        value[q] = gemm_epilogue(args, sum[q] + (args.bias ? args.bias[col + q] : 0.0f));
    }
    if (args.mask) {
        u32 bits[4];
        philox_block(philox_resolve(args.dropout), at / 4, bits);
        float keep[4];
        for (int q = 0; q < 4; ++q) {
            keep[q] = dropout_mask_value(bits[q], args.dropout_p);
            value[q] *= keep[q];
        }
        *(float4*)(args.mask + at) = make_float4(keep[0], keep[1], keep[2], keep[3]);
    }
    *(float4*)(args.c + at) = make_float4(value[0], value[1], value[2], value[3]);
}

// Whether the quad of row `row` at columns col..col + 3 (col a multiple of 4) is inside the
// matrix and 16-byte aligned: n a multiple of 4 and the quad not past the row's end.
__device__ __forceinline__ bool whole_quad(const GemmArgs& args, int row, int col) {
    return row < args.m && args.n % 4 == 0 && col + 3 < args.n;
}

// gemm_store for a quad that is not whole (at the matrix's right edge, or n not a multiple of 4),
// one result at a time: the values by value, so no array of the caller's is indexed at run
// time (which would put it in local memory), and in a loop that is not unrolled, so the rare
// edge code is there once, not four times (a quad's results can straddle two Philox blocks).
__device__ __forceinline__ void gemm_store_ragged(const GemmArgs& args, int split, int row,
                                                  int col, float v0, float v1, float v2,
                                                  float v3) {
#pragma unroll 1
    for (int q = 0; q < 4; ++q) {  // result q in v0
        gemm_store(args, split, row, col + q, v0);
        v0 = v1;
        v1 = v2;
        v2 = v3;
    }
}

// gemm_store for the quad of row `row` at columns col..col + 3 (col a multiple of 4): 16-byte
// stores of finished values or partial sums where the quad is whole, else one by one.
__device__ __forceinline__ void gemm_store_quad(const GemmArgs& args, int split, int row,
                                                int col, const float acc[4]) {
    if (!whole_quad(args, row, col)) {
        gemm_store_ragged(args, split, row, col, acc[0], acc[1], acc[2], acc[3]);
        return;
    }
    const u64 at = (u64)row * args.n + col;
    if (args.partials) {
        float* partial = args.partials + (u64)split * args.m * args.n + at;
        *(float4*)partial = make_float4(acc[0], acc[1], acc[2], acc[3]);
    } else {
        gemm_finish_quad(args, at, col, acc);
    }
}

// ---------------------------------------------------------------------------------------------
// gemm: 64 × 64 tiles, optional split-K. Launch: grid (ceil(n / 64), ceil(m / 64), splits),
// 256 threads of 4 × 4 results. gemm_small: the same with 32 × 32 tiles of 128 threads of 2 × 4
// results (grid ceil(n / 32) × ceil(m / 32) × splits). Each result is one thread's sum over k in
// the same order either way, so the two give the same bits. For batch-64 products, whose 64 × 64
// tiles keep each busy SM's four schedulers at 2 warps issuing 16 · 18 instructions per slice
// each: a small tile's block has one warp per scheduler issuing 16 · 10, on 4× the SMs (per
// product where the host's autotuner measured it faster, or for all products: set_small_tiles).
// gemm_pair_small is gemm_pair in the same small tiles.

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_TM 4  // rows of results per thread (gemm; gemm_small has GEMM_SMALL_TM)
#define GEMM_TN 4  // columns of results per thread: a quad, stored with one 16-byte store
#define GEMM_SMALL_TILE 32
#define GEMM_SMALL_TM 2

// Split-K's rendezvous, after a block has stored its partial tile: true in the block that
// arrives last at its tile, which then finishes it (split_k_finish_tile). Every block counts
// itself in at the tile's counter once all its threads have stored (the barrier), releasing
// its partial sums to whoever counts after it; the last one resets the counter, so the
// counters (zeroed once, when the device is opened) are ready for the next launch and every
// graph replay. (The pattern of the CUDA Programming Guide's __threadfence() example, with
// one acquire-release atomic per block instead of a fence in every thread.)
__device__ __forceinline__ bool split_k_last_arrival(const GemmArgs& args, const GemmTile& tile) {
    __shared__ int last;
    __syncthreads();  // every thread of the block has stored its partial sums
    if (threadIdx.x == 0) {
        u32* counter = args.tile_counters + tile.y * tile.tiles_x + tile.x;
        last = arrive_acq_rel(counter) == (u32)tile.splits - 1;
        if (last) {
            *counter = 0u;  // every other block of the tile has counted itself in already
        }
    }
    __syncthreads();  // the last block's threads read the partials after its acquire
    return last;
}

// gemm_finish for a quad of sums that is not whole, each result inside the matrix, as
// gemm_store_ragged.
__device__ __forceinline__ void gemm_finish_ragged(const GemmArgs& args, int row, int col,
                                                   float s0, float s1, float s2, float s3) {
#pragma unroll 1
    for (int q = 0; q < 4; ++q) {  // result q in s0
        if (row < args.m && col + q < args.n) {
            gemm_finish(args, (u64)row * args.n + col + q, col + q, s0);
        }
        s0 = s1;
        s1 = s2;
        s2 = s3;
    }
}

// The last block of a split tile: C = epilogue(Σ_z partials[z] + bias) over the TILE × TILE tile
// at (row0, col0), z in order whichever block this is. Each of the block's THREADS threads
// finishes TILE² / 4 / THREADS quads of a row (16-byte loads where whole), all of its loads for one
// z in flight together: one partial tile after another, not one element's round trips after
// another's. The partials are read from L2 (__ldcg): this SM's L1 may hold stale copies of
// lines shared with a neighbouring tile.
template <int TILE, int THREADS>
__device__ __forceinline__ void split_k_finish_tile(const GemmArgs& args, int splits, int row0,
                                                    int col0) {
    constexpr int QUADS = TILE * TILE / 4 / THREADS;
    const u64 size = (u64)args.m * args.n;
    float sums[QUADS][4];
    for (int r = 0; r < QUADS; ++r) {
        for (int q = 0; q < 4; ++q) {
            sums[r][q] = 0.0f;
        }
    }
    for (int z = 0; z < splits; ++z) {
        const float* partial = args.partials + z * size;
#pragma unroll
        for (int r = 0; r < QUADS; ++r) {
            const int e = threadIdx.x + r * THREADS;
            const int row = row0 + e / (TILE / 4), col = col0 + (e % (TILE / 4)) * 4;
            const u64 at = (u64)row * args.n + col;
            if (whole_quad(args, row, col)) {
                const float4 p = __ldcg((const float4*)(partial + at));
                sums[r][0] += p.x;
                sums[r][1] += p.y;
                sums[r][2] += p.z;
                sums[r][3] += p.w;
            } else if (row < args.m) {
                for (int q = 0; q < 4; ++q) {
                    if (col + q < args.n) {
                        sums[r][q] += __ldcg(partial + at + q);
                    }
                }
            }
        }
    }
#pragma unroll 1
    for (int r = 0; r < QUADS; ++r) {  // quad r in sums[0] (shift_rows_up)
        const int e = threadIdx.x + r * THREADS;
        const int row = row0 + e / (TILE / 4), col = col0 + (e % (TILE / 4)) * 4;
        if (whole_quad(args, row, col)) {
            gemm_finish_quad(args, (u64)row * args.n + col, col, sums[0]);
        } else {
            gemm_finish_ragged(args, row, col, sums[0][0], sums[0][1], sums[0][2], sums[0][3]);
        }
        shift_rows_up(sums);
    }
}

// Asynchronous copies from global to shared memory (`cp.async`, sm_80 and later): a thread
// starts a copy and goes on; the data lands in shared memory in the background, and the thread
// waits for it only when it needs it (copy_async_wait). Copies are grouped by commit; a wait
// names how many of the most recent groups may still be in flight. The emulator holds each
// copy back until its wait (emulator.h); before sm_80 each copy is an ordinary load and
// store, done by the time it returns, which the waits then trivially satisfy. FG_SYNC_COPIES
// (a variant of kernels/sweep.txt) takes that path everywhere: on the emulator, which checks
// it against the defaults, and on a GPU of sm_80 or later, which times what cp.async buys.
//
// FG_ARCH is the architecture this file is compiled for, as __CUDA_ARCH__ writes it (750 for
// sm_75): NVRTC's on a GPU; on the emulator 800, as it emulates cp.async and the TF32 tensor
// cores, or 750 in the unit build.rs compiles with -DFG_EMULATED_ARCH=750 for the emulated
// Turing GPU (CudaDevice::emulator_sm75), which runs what sm_75 compiles: plain copies, and
// the TF32 helpers below that trap.
#if defined(FERROGRAD_EMULATOR) && defined(FG_EMULATED_ARCH)
#define FG_ARCH FG_EMULATED_ARCH
#elif defined(FERROGRAD_EMULATOR)
#define FG_ARCH 800
#else
#define FG_ARCH __CUDA_ARCH__
#endif

#if FG_ARCH >= 800 && !defined(FG_SYNC_COPIES) && defined(FERROGRAD_EMULATOR)
#define FG_COPY_EMULATED 1
#elif FG_ARCH >= 800 && !defined(FG_SYNC_COPIES)
#define FG_COPY_ASYNC 1
#endif

// Where a copy lands in shared memory, as cp.async names it: on a GPU a 32-bit address in the
// block's shared window, worked out once per k-loop (from a generic pointer each copy costs a
// conversion: on sm_90 a read of the block's cluster rank and two LEAs); a pointer elsewhere.
#if defined(FG_COPY_ASYNC)
typedef u32 SharedPlace;
__device__ __forceinline__ SharedPlace shared_place(float* p) {
    return (u32)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ SharedPlace shared_place_plus(SharedPlace at, int floats) {
    return at + 4u * (u32)floats;
}
#else
typedef float* SharedPlace;
__device__ __forceinline__ SharedPlace shared_place(float* p) { return p; }
__device__ __forceinline__ SharedPlace shared_place_plus(SharedPlace at, int floats) {
    return at + floats;
}
#endif

// shared[0..FLOATS] = global[0..FLOATS] if `valid`, else zeros (and no global read at all).
// FLOATS is 1, or 4 with both addresses 16-byte aligned (then the copy bypasses L1: the tile
// is read once, from shared memory).
template <int FLOATS>
__device__ __forceinline__ void copy_async(SharedPlace shared, const float* global, bool valid) {
#if defined(FG_COPY_EMULATED)
    ferrograd_emu::copy_async(shared, global, FLOATS, valid);
#elif defined(FG_COPY_ASYNC)
    const int bytes = valid ? 4 * FLOATS : 0;
    if (FLOATS == 4) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared),
                     "l"(global), "r"(bytes));
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared),
                     "l"(global), "r"(bytes));
    }
#else
    // Before sm_80 (or FG_SYNC_COPIES): an ordinary load and store (16 bytes at once where
    // FLOATS is 4: both addresses are then 16-byte aligned).
    if (FLOATS == 4) {
        const float4 zero = {0.0f, 0.0f, 0.0f, 0.0f};
        *(float4*)shared = valid ? *(const float4*)global : zero;
    } else {
        *shared = valid ? *global : 0.0f;
    }
#endif
}

// Closes the group of the copies this thread started since the last commit.
__device__ __forceinline__ void copy_async_commit() {
#if defined(FG_COPY_EMULATED)
    ferrograd_emu::copy_async_commit();
#elif defined(FG_COPY_ASYNC)
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most `PENDING` of this thread's most recent groups are still in flight.
template <int PENDING>
__device__ __forceinline__ void copy_async_wait() {
#if defined(FG_COPY_EMULATED)
    ferrograd_emu::copy_async_wait(PENDING);
#elif defined(FG_COPY_ASYNC)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
#endif
}

// Quad `quad` of a WIDTH × DEPTH slice of an operand, as Pipeline::OperandCopies copies it into a
// k-major tile (tile[p][x]): four elements of one row of the operand as stored. Along x (the
// operand stored [k, x]) they are consecutive, elements (x + q, p) at tile[p][x + q], and
// consecutive quads go to consecutive threads, so a warp reads whole 16-byte pieces of
// consecutive addresses. Along k (stored [x, k]: every forward product's A and B) they are
// K_SPACING = DEPTH / 4 apart, elements (x, p + K_SPACING · q), q = 0..3, at
// tile[p + K_SPACING · q][x], and the K_SPACING threads of one x cover its DEPTH elements
// (p = 0 .. K_SPACING − 1): the 4-byte copies of one instruction (one q across a warp) land
// in rows p + K_SPACING · q that differ in p, which a tile row padded by 128 / DEPTH floats
// puts in different banks (Pipeline's STRIDE): no bank conflicts. (Four consecutive elements
// instead put a warp's copies of one instruction in rows 4 apart, four lanes a bank whatever
// the padding: 4 wavefronts a copy; kernels/emulator/shared_trace.cpp counted them.) A warp
// still reads 16 consecutive bytes of each row it touches per instruction.
template <int WIDTH, int DEPTH>
struct SliceQuad {
    static constexpr int K_SPACING = DEPTH / 4;  // quads per row of the source along k
    int x, p;
    bool along_k;

    __device__ __forceinline__ SliceQuad(int quad, bool along_k_) : along_k(along_k_) {
        constexpr int ALONG_X = WIDTH / 4;  // quads per row of the source along x
        x = along_k ? quad / K_SPACING : (quad % ALONG_X) * 4;
        p = along_k ? quad % K_SPACING : quad / ALONG_X;
    }
    // Element q's column (or row) in the tile: x, or x + q along x.
    __device__ __forceinline__ int tile_x(int q) const { return along_k ? x : x + q; }
    // Where element 0 lies in the operand as stored, for the slice at k0 of rows / columns
    // x0..: at [x, p] in rows of k when along k (A stored [m, k], B stored [n, k]), else at
    // [p, x] in rows of `count` (m or n).
    __device__ __forceinline__ u64 offset(int count, int k, int x0, int k0) const {
        return along_k ? (u64)(x0 + x) * k + k0 + p : (u64)(k0 + p) * count + x0 + x;
    }
};

// The values a thread needs to read its quads of one slice of A through a backward rule
// (GemmArgs::lhs_rule): the saved output and the dropout mask of each element.
template <int QUADS>
struct LhsRuleOperands {
    float saved[QUADS][4];
    float mask[QUADS][4];
};

__device__ __forceinline__ bool aligned_16(const float* p) { return (u64)p % 16 == 0; }

// A GEMM kernel's k-loop pipeline: tiles of op(A) and op(B) WIDTH rows / columns wide, k cut
// into DEPTH-deep slices, STAGES slices in shared memory at once (tile rows STRIDE floats
// apart), THREADS threads. While a block multiplies slice s out of shared memory, the copies of
// slices s + 1 .. s + STAGES - 1 are in flight (cp.async), so it waits for memory once, at the
// start, not once per slice. Slice s lives in stage s % STAGES; the s-th group of copies a
// thread commits holds slice s (empty groups past the last slice keep the count regular).
// `run` is the whole k-loop; a kernel supplies what it does with one slice.
//
// With LHS_RULE, `run` also reads A through the product's backward rule, if it has one: each
// thread loads the rule's operands for its quads of slice s + AHEAD into registers (a ring of
// AHEAD slices, STAGES - 1 unless a tuning sweep sets fewer: cp.async cannot transform what it
// copies, and shared memory has no room for two more tiles per stage), and once its own copies
// of slice s have landed it rewrites those quads of A's tile in place, before the barrier that
// hands the slice to the block.
template <int WIDTH, int DEPTH, int STAGES, int STRIDE, int THREADS, bool LHS_RULE>
struct Pipeline {
    static_assert(STAGES >= 2, "a pipeline has a slice in use and one on its way at least");
    static_assert(WIDTH % 4 == 0 && DEPTH % 4 == 0 && STRIDE % 4 == 0, "whole quads");
    static_assert((WIDTH * DEPTH / 4) % THREADS == 0, "as many quads per thread");
    // Each operand's quads of a slice per thread.
    static constexpr int QUADS = WIDTH * DEPTH / 4 / THREADS;
    // How many slices ahead of its turn a slice's rule operands are loaded: as far ahead as
    // its copies (STAGES - 1), unless a tuning sweep sets GEMM_RULE_AHEAD lower (a shorter
    // ring of registers to move on each slice, a shorter time to hide the loads behind).
#ifdef GEMM_RULE_AHEAD
    static constexpr int AHEAD = GEMM_RULE_AHEAD < STAGES - 1 ? GEMM_RULE_AHEAD : STAGES - 1;
#else
    static constexpr int AHEAD = STAGES - 1;
#endif
    static_assert(AHEAD >= 1, "GEMM_RULE_AHEAD is 1 at least");
    using Quad = SliceQuad<WIDTH, DEPTH>;

    // The number of slices in k_begin..k_end.
    static __device__ __forceinline__ int slices(int k_begin, int k_end) {
        return k_end > k_begin ? (k_end - k_begin + DEPTH - 1) / DEPTH : 0;
    }

    // One thread's copies of one operand's slices into the stages: WIDTH rows x0.. of op(A) or
    // WIDTH columns of op(B), each slice a k-major tile, zero outside the matrix and past k_end.
    // A slice is WIDTH · DEPTH / 4 quads (SliceQuad), each thread taking every THREADS-th; a quad
    // along k is four 4-byte copies into rows K_SPACING apart (the transpose), one along x a
    // single 16-byte copy where the row length allows (a multiple of 4: every quad aligned,
    // wholly inside or outside the matrix). A thread copies the same quads of every slice but
    // for k, so where each starts in the operand, where it lands in a stage (as the address
    // cp.async takes) and which of its elements lie past the matrix's edge are worked out once,
    // before the k-loop; a slice's copies then cost an add or two each. (Worked out per slice,
    // they took gemm_large a third as many instructions as its FMAs: SASS, 2026-11-28.)
    struct OperandCopies {
        const float* src;
        const float* from[QUADS];  // element 0 of quad i in the next slice
        SharedPlace to[QUADS];     // where it lands in the first stage, as cp.async takes it
        int at[QUADS];             // the same in floats from a stage's start: p · STRIDE + x
        int p[QUADS];              // its k within the slice
        u32 inside[QUADS];         // bit q: element q's row / column is inside the matrix
        u64 step;                  // from one slice to the next: DEPTH along k, or DEPTH rows
        bool along_k;
        bool wide;      // one 16-byte copy per quad
        bool interior;  // every quad's elements all inside the matrix's rows / columns

        __device__ __forceinline__ OperandCopies(const float* src_, bool along_k_, int count,
                                                 int k, int x0, int k_begin, float* tiles)
            : src(src_), along_k(along_k_) {
            wide = !along_k && count % 4 == 0;
            step = along_k ? (u64)DEPTH : (u64)DEPTH * count;
            interior = true;
#pragma unroll
            for (int i = 0; i < QUADS; ++i) {
                const Quad quad(threadIdx.x + i * THREADS, along_k);
                from[i] = src + quad.offset(count, k, x0, k_begin);
                at[i] = quad.p * STRIDE + quad.x;
                to[i] = shared_place(tiles + at[i]);
                p[i] = quad.p;
                inside[i] = 0;
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    inside[i] |= (x0 + quad.tile_x(q) < count ? 1u : 0u) << q;
                }
                interior = interior && inside[i] == 0xfu;
            }
            // Rows along x whose length is not a multiple of 4 (no 16-byte copies; no operand
            // of the GAN's) take the checked path, so that the unchecked one has two layouts,
            // not three (ptxas predicates the layouts' copies: each issues them all).
            interior = interior && (along_k || wide);
        }

        // From one element of a quad to the next in the operand as stored: K_SPACING floats
        // along k, the next one along x.
        __device__ __forceinline__ int source_step() const {
            return along_k ? Quad::K_SPACING : 1;
        }

        // The same in a stage: K_SPACING rows of the tile along k, the next column along x.
        __device__ __forceinline__ int element_step() const {
            return along_k ? Quad::K_SPACING * STRIDE : 1;
        }

        // Where element q of quad i lands in a stage (floats from its start).
        __device__ __forceinline__ int tile_index(int i, int q) const {
            return at[i] + q * element_step();
        }

        // Whether element q of quad i of the slice at k0 is inside the matrix.
        __device__ __forceinline__ bool element_inside(int i, int q, int k0, int k_end) const {
            const int k_offset = along_k ? q * Quad::K_SPACING : 0;
            return (inside[i] >> q & 1u) && k0 + p[i] + k_offset < k_end;
        }

        // Where quad i of the slice read next starts in the operand, in floats from `src`.
        __device__ __forceinline__ u64 offset(int i) const { return (u64)(from[i] - src); }

        // Starts the copies of the next slice, at k0, into the stage `stage_floats` floats
        // past the first. Away from every edge (all but a ragged last slice, in interior
        // tiles) without checks: an add for the place, each copy at a constant offset from
        // it, and the step on to the next slice.
        __device__ __forceinline__ void copy_next(int stage_floats, int k0, int k_end) {
            if (interior && k0 + DEPTH <= k_end) {
#pragma unroll
                for (int i = 0; i < QUADS; ++i) {
                    const SharedPlace place = shared_place_plus(to[i], stage_floats);
                    if (wide) {
                        copy_async<4>(place, from[i], true);
                    } else {  // along k
#pragma unroll
                        for (int q = 0; q < 4; ++q) {
                            copy_async<1>(shared_place_plus(place, q * Quad::K_SPACING * STRIDE),
                                          from[i] + q * Quad::K_SPACING, true);
                        }
                    }
                    from[i] += step;
                }
                return;
            }
#pragma unroll
            for (int i = 0; i < QUADS; ++i) {
                const SharedPlace place = shared_place_plus(to[i], stage_floats);
                if (wide) {
                    const bool valid = (inside[i] & 1u) && k0 + p[i] < k_end;
                    copy_async<4>(place, valid ? from[i] : src, valid);
                } else {
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        const bool valid = element_inside(i, q, k0, k_end);
                        copy_async<1>(shared_place_plus(place, q * element_step()),
                                      valid ? from[i] + q * source_step() : src, valid);
                    }
                }
                from[i] += step;
            }
        }
    };

    // The rule's operands for this thread's quads of A's slice at k0, `back` slices before the
    // one `a` copies next (stored where those elements are in A): 0 outside the matrix, where
    // the tile holds zeros, which every rule keeps 0; the mask 1 without dropout. 16-byte loads
    // where a quad along x is whole and aligned (along k its elements are K_SPACING apart).
    // Plain loads into registers: nothing waits for them until the slice's turn, AHEAD slices
    // later.
    static __device__ __forceinline__ void load_rule_operands(const GemmArgs& args,
                                                              const OperandCopies& a, int back,
                                                              int k0, int k_end,
                                                              LhsRuleOperands<QUADS>& into) {
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            const u64 offset = a.offset(i) - (u64)back * a.step;
            const float* saved = args.lhs_saved + offset;
            const float* mask = args.lhs_mask ? args.lhs_mask + offset : nullptr;
            // Element 3 inside means all four are (it is the last along k, or along x).
            const bool whole = a.element_inside(i, 3, k0, k_end);
            if (whole && a.along_k) {
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    into.saved[i][q] = saved[q * Quad::K_SPACING];
                    into.mask[i][q] = mask ? mask[q * Quad::K_SPACING] : 1.0f;
                }
                continue;
            }
            if (whole && aligned_16(saved) && (!mask || aligned_16(mask))) {
                const float4 s = *(const float4*)saved;
                const float4 d = mask ? *(const float4*)mask : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
                const float s4[4] = {s.x, s.y, s.z, s.w}, d4[4] = {d.x, d.y, d.z, d.w};
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    into.saved[i][q] = s4[q];
                    into.mask[i][q] = d4[q];
                }
                continue;
            }
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const bool valid = a.element_inside(i, q, k0, k_end);
                const int at = q * a.source_step();
                into.saved[i][q] = valid ? saved[at] : 0.0f;
                into.mask[i][q] = !valid ? 0.0f : mask ? mask[at] : 1.0f;
            }
        }
    }

    // This thread's quads of A's slice in `tile`, read through the rule, in place: one switch
    // on the rule for all of them (a switch per element cost each ~8 instructions more: SASS).
    // A quad along x is four consecutive floats of a tile row: one 16-byte load and store, a
    // quarter-warp's 8 quads in 32 banks. (Four 4-byte ones took four wavefronts each: 16
    // lanes of a row 32 banks wide and the next row, 64 floats on, in the same banks again;
    // kernels/emulator/shared_trace.cpp counted them.) A quad along k is four 4-byte
    // accesses K_SPACING rows apart, a warp's in different banks as its copies (SliceQuad).
    static __device__ __forceinline__ void apply_rule(const GemmArgs& args, const OperandCopies& a,
                                                      const LhsRuleOperands<QUADS>& operands,
                                                      float (*tile)[STRIDE]) {
        float* stage = &tile[0][0];
        switch (args.lhs_rule) {
            case GEMM_LHS_RULE_RELU:
                apply_rule_as<GEMM_LHS_RULE_RELU>(args, a, operands, stage);
                break;
            case GEMM_LHS_RULE_LEAKY_RELU:
                apply_rule_as<GEMM_LHS_RULE_LEAKY_RELU>(args, a, operands, stage);
                break;
            case GEMM_LHS_RULE_TANH:
                apply_rule_as<GEMM_LHS_RULE_TANH>(args, a, operands, stage);
                break;
            case GEMM_LHS_RULE_SIGMOID:
                apply_rule_as<GEMM_LHS_RULE_SIGMOID>(args, a, operands, stage);
                break;
            default: apply_rule_as<GEMM_LHS_RULE_NONE>(args, a, operands, stage);
        }
    }

    template <int RULE>
    static __device__ __forceinline__ void apply_rule_as(const GemmArgs& args,
                                                         const OperandCopies& a,
                                                         const LhsRuleOperands<QUADS>& operands,
                                                         float* stage) {
#pragma unroll
        for (int i = 0; i < QUADS; ++i) {
            auto rule = [&](int q, float element) {
                return gemm_lhs_rule<RULE>(args, operands.saved[i][q], operands.mask[i][q],
                                           element);
            };
            if (!a.along_k) {  // at[i] is a multiple of 4 floats: 16-byte aligned
                float4& quad = *(float4*)&stage[a.tile_index(i, 0)];
                const float4 in = quad;
                quad = make_float4(rule(0, in.x), rule(1, in.y), rule(2, in.z), rule(3, in.w));
                continue;
            }
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                float& a_element = stage[a.tile_index(i, q)];
                a_element = rule(q, a_element);
            }
        }
    }

    // The k-loop over k_begin..k_end of A's rows row0.. and B's columns col0..:
    // multiply(stage) for each slice in turn, once that slice is in a_tiles[stage] and
    // b_tiles[stage] (A through the rule, if any).
    template <class Multiply>
    static __device__ __forceinline__ void run(const GemmArgs& args,
                                               float (*a_tiles)[DEPTH][STRIDE],
                                               float (*b_tiles)[DEPTH][STRIDE], int row0,
                                               int col0, int k_begin, int k_end,
                                               Multiply multiply) {
        const int count = slices(k_begin, k_end);
        const bool rule = LHS_RULE && args.lhs_rule != GEMM_LHS_RULE_NONE;
        OperandCopies a_copies(args.a, !args.lhs_transposed, args.m, args.k, row0, k_begin,
                               &a_tiles[0][0][0]);
        OperandCopies b_copies(args.b, args.rhs_transposed, args.n, args.k, col0, k_begin,
                               &b_tiles[0][0][0]);
        // Starts the copies of slice `slice` into stage `at`, if the block has such a slice,
        // and commits them as one group (empty groups past the last slice keep the count
        // regular).
        auto stage = [&](int slice, int at) {
            if (slice < count) {
                const int k0 = k_begin + slice * DEPTH;
                a_copies.copy_next(at * DEPTH * STRIDE, k0, k_end);
                b_copies.copy_next(at * DEPTH * STRIDE, k0, k_end);
            }
            copy_async_commit();
        };
        // The rule's operands of slices s .. s + AHEAD - 1, slice s's in rule_ring[0]
        // (constant indices only, so the ring stays in registers; shift_rows_up moves it on).
        LhsRuleOperands<QUADS> rule_ring[AHEAD];
#pragma unroll
        for (int s = 0; s < STAGES - 1; ++s) {  // fill the pipeline
            if (rule && s < AHEAD && s < count) {  // before stage(s) moves `a_copies` on
                load_rule_operands(args, a_copies, 0, k_begin + s * DEPTH, k_end, rule_ring[s]);
            }
            stage(s, s);
        }
        for (int s = 0; s < count; ++s) {
            // Slice s is in stage s % STAGES; the slice refilled beside it, s + STAGES - 1, goes
            // into the stage slice s - 1 was read from. (Kept in counters across iterations
            // instead, the two stages take gemm_large past its 128 registers.)
            const int read = s % STAGES, refill = read == 0 ? STAGES - 1 : read - 1;
            // This thread has committed s + STAGES - 1 groups; all but the newest STAGES - 2
            // have landed, so its copies of slice s have.
            copy_async_wait<STAGES - 2>();
            if (rule) {
                apply_rule(args, a_copies, rule_ring[0], a_tiles[read]);
                shift_rows_up(rule_ring);
            }
            // Slice s is in shared memory for the whole block; every thread is done with
            // slice s - 1, whose stage the refill below overwrites.
            __syncthreads();
            const int refill_slice = s + STAGES - 1;
            if (rule && s + AHEAD < count) {
                // `a_copies` is at the slice it copies next: refill_slice, or past the last.
                const int back = min(refill_slice, count) - (s + AHEAD);
                load_rule_operands(args, a_copies, back, k_begin + (s + AHEAD) * DEPTH, k_end,
                                   rule_ring[AHEAD - 1]);
            }
            stage(refill_slice, refill);
            multiply(read);
        }
    }
};

// The depth of the tiled kernels' pipelines: at batch 64 a block alone on its SM has only
// 4–8 warps to hide a round trip to memory (~1 µs) behind a slice of FMAs (~0.3 µs); with two
// buffers and one load in flight, every slice waited (benches/RESULTS.md, 2026-11-28). 2 to 5
// (shared memory: 9 KiB per stage in gemm and gemm_tf32, 5 in gemm_small); a tuning sweep
// may set it (FERROGRAD_KERNEL_DEFINES). Before sm_80, 3: a Turing SM has 64 KiB of shared
// memory, and two blocks of 4 stages (36,880 bytes each) would not fit, so one would run
// where __launch_bounds__(256, 2) promises two (tests/nvrtc.rs checks each promise on each
// architecture); with plain copies (no cp.async there) a fourth stage hides no more.
#ifndef GEMM_STAGES
#if FG_ARCH >= 800
#define GEMM_STAGES 4
#else
#define GEMM_STAGES 3
#endif
#endif
#if GEMM_STAGES < 2 || GEMM_STAGES > 5
#error "GEMM_STAGES is 2 to 5"
#endif

// Floats a row of gemm's and gemm_small's tiles is padded by in shared memory: with rows
// TILE + 8 floats apart, the 4-byte copies of an operand stored along k, one instruction's in
// rows 1 to 3 apart (SliceQuad), fall 8 banks apart, the warp's 32 in 32 banks; unpadded
// (rows 64 or 32 floats apart, all in the same banks) they take 4 wavefronts each. A tuning
// sweep may set 0 to time what the padding buys (the k-loop reads whole rows: either way
// without conflicts).
#ifndef GEMM_ROW_PAD
#define GEMM_ROW_PAD 8
#endif
#if GEMM_ROW_PAD != 0 && GEMM_ROW_PAD != 8
#error "GEMM_ROW_PAD is 0 or 8"
#endif

// One k-slice of a `gemm` block's tile out of shared memory: acc += the thread's TM × 4
// products, and with ROW_SUMS row_sum += its TM values of op(A). A thread's TM + 4 operands of
// one k step are two shared loads (16 bytes of B; 16 or 8 of A). A template, so that the blocks
// without row sums (all but a weight gradient's first column of tiles) run a k-step of FMAs and
// no adds: with a runtime flag in the loop, ptxas computes the adds anyway and selects.
template <int STRIDE, int TM, bool ROW_SUMS>
__device__ __forceinline__ void gemm_multiply_slice(const float (*a_tile)[STRIDE],
                                                    const float (*b_tile)[STRIDE], int tx, int ty,
                                                    float (&acc)[TM][GEMM_TN],
                                                    float (&row_sum)[TM]) {
    static_assert(TM == 2 || TM == 4, "a thread's rows: one 8- or 16-byte load");
#pragma unroll
    for (int p = 0; p < GEMM_BK; ++p) {
        float a_reg[TM];
        if constexpr (TM == 4) {
            const float4 a4 = *(const float4*)&a_tile[p][ty * TM];
            a_reg[0] = a4.x;
            a_reg[1] = a4.y;
            a_reg[2] = a4.z;
            a_reg[3] = a4.w;
        } else {
            const float2 a2 = *(const float2*)&a_tile[p][ty * TM];
            a_reg[0] = a2.x;
            a_reg[1] = a2.y;
        }
        const float4 b4 = *(const float4*)&b_tile[p][tx * GEMM_TN];
        const float b_reg[GEMM_TN] = {b4.x, b4.y, b4.z, b4.w};
        for (int i = 0; i < TM; ++i) {
            for (int j = 0; j < GEMM_TN; ++j) {
                acc[i][j] += a_reg[i] * b_reg[j];
            }
            if (ROW_SUMS) {
                row_sum[i] += a_reg[i];
            }
        }
    }
}

// The pipeline's stages of a TILE-wide tiled kernel: GEMM_STAGES slices of op(A)'s and
// op(B)'s tiles. Each kernel declares its own __shared__ in its body, not gemm_block, a
// function template: GCC (the emulator's compiler) ignores the section attribute that makes a
// __shared__ variable the emulator's (emulator.h) on a template's statics, and put these in
// ordinary memory, neither poisoned nor saved per block.
template <int TILE>
struct __align__(16) GemmStages {
    static constexpr int STRIDE = TILE + GEMM_ROW_PAD;
    float a[GEMM_STAGES][GEMM_BK][STRIDE];
    float b[GEMM_STAGES][GEMM_BK][STRIDE];
};

// One block of `gemm` (TILE 64, TM 4), `gemm_small` (32, 2) or `gemm_pair`: the TILE × TILE
// tile `tile` of the product `args`, each of its TILE² / (TM · 4) threads computing TM rows of
// a quad of columns, its slices in `stages`.
template <int TILE, int TM>
__device__ __forceinline__ void gemm_block(const GemmArgs& args, const GemmTile& tile,
                                           GemmStages<TILE>& stages) {
    constexpr int THREADS = TILE * TILE / (TM * GEMM_TN);
    auto a_tiles = stages.a;
    auto b_tiles = stages.b;
    const int tx = threadIdx.x % (TILE / GEMM_TN);
    const int ty = threadIdx.x / (TILE / GEMM_TN);
    const int row0 = tile.y * TILE;
    const int col0 = tile.x * TILE;
    const int k_begin = tile.z * args.k_chunk;
    const int k_end = min(args.k, k_begin + args.k_chunk);
    constexpr int STRIDE = GemmStages<TILE>::STRIDE;
    using Pipe = Pipeline<TILE, GEMM_BK, GEMM_STAGES, STRIDE, THREADS, true>;
    const bool row_sums = args.row_sums && tile.x == 0;  // the first column of tiles
    float acc[TM][GEMM_TN];
    float row_sum[TM];
    for (int i = 0; i < TM; ++i) {
        row_sum[i] = 0.0f;
        for (int j = 0; j < GEMM_TN; ++j) {
            acc[i][j] = 0.0f;
        }
    }
    Pipe::run(args, a_tiles, b_tiles, row0, col0, k_begin, k_end, [&](int stage) {
        if (row_sums) {
            gemm_multiply_slice<STRIDE, TM, true>(a_tiles[stage], b_tiles[stage], tx, ty, acc,
                                                  row_sum);
        } else {
            gemm_multiply_slice<STRIDE, TM, false>(a_tiles[stage], b_tiles[stage], tx, ty, acc,
                                                   row_sum);
        }
    });
#pragma unroll 1
    for (int i = 0; i < TM; ++i) {  // row i in acc[0], row_sum[0] (shift_rows_up)
        const int row = row0 + ty * TM + i;
        gemm_store_quad(args, tile.z, row, col0 + tx * GEMM_TN, acc[0]);
        if (row_sums && tx == 0 && row < args.m) {
            args.row_sums[row] = row_sum[0];
        }
        shift_rows_up(acc);
        shift_rows_up(row_sum);
    }
    if (args.partials && split_k_last_arrival(args, tile)) {
        split_k_finish_tile<TILE, THREADS>(args, tile.splits, row0, col0);
    }
}

// Two blocks per SM at least (at most 128 registers a thread), here and in gemm_pair: the step's
// widest launches (G's last layer's pair, 304 blocks) then fit an H100 or H200 in one wave or
// little more.
FG_KERNEL(gemm, GemmArgs, __launch_bounds__(256, 2)) {
    __shared__ GemmStages<GEMM_BM> stages;
    gemm_block<GEMM_BM, GEMM_TM>(args, grid_tile(), stages);
}

FG_KERNEL(gemm_small, GemmArgs) {
    __shared__ GemmStages<GEMM_SMALL_TILE> stages;
    gemm_block<GEMM_SMALL_TILE, GEMM_SMALL_TM>(args, grid_tile(), stages);
}

// Two independent products in one launch: a linear layer's ∂L/∂x = ∂L/∂z · W beside its
// ∂L/∂W = (∂L/∂z)ᵀ · x. A 1-D grid: the first product's blocks (its tiles_x × tiles_y ×
// splits grid, x fastest), then the second's. Where one product alone would leave SMs idle or
// waiting on memory, the two share the GPU, and the second costs no launch of its own. The
// host gives each product split-K counters of its own.
struct GemmPairArgs {
    GemmArgs product[2];
    int tiles_x[2];
    int tiles_y[2];
    int splits[2];
};

// Runs the block of a `gemm_pair` launch that blockIdx.x names: `block(product, tile)` with
// `block` the kernel's own (gemm_block or gemm_tf32_block).
template <class Block>
__device__ __forceinline__ void gemm_pair_block(const GemmPairArgs& args, Block block) {
    const int first_blocks = args.tiles_x[0] * args.tiles_y[0] * args.splits[0];
    const int which = (int)blockIdx.x < first_blocks ? 0 : 1;
    const int b = (int)blockIdx.x - which * first_blocks;
    const int tiles_x = args.tiles_x[which], tiles_y = args.tiles_y[which];
    const GemmTile tile{b % tiles_x, (b / tiles_x) % tiles_y, b / (tiles_x * tiles_y), tiles_x,
                        args.splits[which]};
    block(args.product[which], tile);
}

FG_KERNEL(gemm_pair, GemmPairArgs, __launch_bounds__(256, 2)) {
    __shared__ GemmStages<GEMM_BM> stages;
    gemm_pair_block(args, [&](const GemmArgs& product, const GemmTile& tile) {
        gemm_block<GEMM_BM, GEMM_TM>(product, tile, stages);
    });
}

FG_KERNEL(gemm_pair_small, GemmPairArgs) {
    __shared__ GemmStages<GEMM_SMALL_TILE> stages;
    gemm_pair_block(args, [&](const GemmArgs& product, const GemmTile& tile) {
        gemm_block<GEMM_SMALL_TILE, GEMM_SMALL_TM>(product, tile, stages);
    });
}

// ---------------------------------------------------------------------------------------------
// gemm_tf32: the optional tensor-core path (set_allow_tf32 on the host, as PyTorch's
// allow_tf32). The same 64 × 64 tiles, pipeline, split-K, epilogues, row sums and pairs
// (gemm_pair_tf32) as `gemm`, but each product goes through `mma.sync.m16n8k8` with operands
// rounded to TF32 (10 mantissa bits, ~3 decimal digits; sums stay FP32). Launch: grid as
// `gemm`, 128 threads: 4 warps of 32 × 32 results, each 2 × 4 MMA tiles of 16 × 8.
//
// Fragments of m16n8k8 (PTX ISA; lane = 4·g + t):  A (16 × 8, row-major): a0 (g, t),
// a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4);  B (8 × 8, k × n): b0 (t, g), b1 (t + 4, g);
// C (16 × 8): c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1).

#if FG_ARCH >= 800 && defined(FERROGRAD_EMULATOR)
#define to_tf32 ferrograd_to_tf32
#define mma_tf32 ferrograd_mma_m16n8k8_tf32
#elif FG_ARCH >= 800
// Round to the nearest TF32 (ties away from zero), as cuBLAS's TF32 mode does.
__device__ __forceinline__ u32 to_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// c += A · B for one 16 × 8 × 8 tile, the warp's 32 lanes each holding their fragments.
__device__ __forceinline__ void mma_tf32(float c[4], const u32 a[4], const u32 b[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
// Before sm_80 (Turing) there are no TF32 tensor cores: the host never launches the TF32
// kernels there (CudaDevice::has_tf32_tensor_cores), and one launched anyway stops here
// instead of computing something else. The rest of this file compiles for sm_75 as it is.
__device__ __forceinline__ u32 to_tf32(float) {
    __trap();
    return 0;
}
__device__ __forceinline__ void mma_tf32(float*, const u32*, const u32*) { __trap(); }
#endif

// Shared rows padded to 72 floats: the fragment reads of a warp (8 rows g × 4 steps t) then
// fall in 32 different banks, and so do the copies along k (as GEMM_ROW_PAD's).
#define TF32_STRIDE 72
#define TF32_THREADS 128

// One k-slice of a gemm_tf32 warp's 32 × 32 results out of shared memory (acc += A · B through
// the tensor cores), and with ROW_SUMS each of the block's first 64 threads adds its row's DEPTH
// values of op(A) to row_sum, in k order and in FP32 as gemm_multiply_slice does: a weight
// gradient's bias gradient, the same bits as FP32's. A template, as gemm_multiply_slice.
template <bool ROW_SUMS>
__device__ __forceinline__ void tf32_multiply_slice(const float (*a_tile)[TF32_STRIDE],
                                                    const float (*b_tile)[TF32_STRIDE],
                                                    int warp_row, int warp_col, int lane,
                                                    float (&acc)[2 * 4][4], float& row_sum) {
    const int g = lane / 4, t = lane % 4;
    for (int kk = 0; kk < GEMM_BK; kk += 8) {
        u32 a[2][4], b[4][2];
        for (int mi = 0; mi < 2; ++mi) {
            int r = warp_row + mi * 16 + g;
            a[mi][0] = to_tf32(a_tile[kk + t][r]);
            a[mi][1] = to_tf32(a_tile[kk + t][r + 8]);
            a[mi][2] = to_tf32(a_tile[kk + t + 4][r]);
            a[mi][3] = to_tf32(a_tile[kk + t + 4][r + 8]);
        }
        for (int ni = 0; ni < 4; ++ni) {
            int c = warp_col + ni * 8 + g;
            b[ni][0] = to_tf32(b_tile[kk + t][c]);
            b[ni][1] = to_tf32(b_tile[kk + t + 4][c]);
        }
        for (int mi = 0; mi < 2; ++mi) {
            for (int ni = 0; ni < 4; ++ni) {
                mma_tf32(acc[4 * mi + ni], a[mi], b[ni]);
            }
        }
    }
    if (ROW_SUMS && threadIdx.x < GEMM_BM) {
#pragma unroll
        for (int p = 0; p < GEMM_BK; ++p) {
            row_sum += a_tile[p][threadIdx.x];
        }
    }
}

// One block of `gemm_tf32` or `gemm_pair_tf32`: the 64 × 64 tile `tile` of the product `args`.
__device__ __forceinline__ void gemm_tf32_block(const GemmArgs& args, const GemmTile& tile) {
    __shared__ __align__(16) float a_tiles[GEMM_STAGES][GEMM_BK][TF32_STRIDE];
    __shared__ __align__(16) float b_tiles[GEMM_STAGES][GEMM_BK][TF32_STRIDE];
    const int row0 = tile.y * GEMM_BM;
    const int col0 = tile.x * GEMM_BN;
    const int k_begin = tile.z * args.k_chunk;
    const int k_end = min(args.k, k_begin + args.k_chunk);
    using Pipe = Pipeline<GEMM_BM, GEMM_BK, GEMM_STAGES, TF32_STRIDE, TF32_THREADS, true>;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_row = (warp / 2) * 32, warp_col = (warp % 2) * 32;
    const int g = lane / 4, t = lane % 4;
    const bool row_sums = args.row_sums && tile.x == 0;  // the first column of tiles
    float acc[2 * 4][4];  // the warp's 2 × 4 MMA tiles: tile (mi, ni) in acc[4 · mi + ni]
    float row_sum = 0.0f;  // row row0 + threadIdx.x's, in the first 64 threads
    for (int f = 0; f < 2 * 4; ++f) {
        for (int r = 0; r < 4; ++r) {
            acc[f][r] = 0.0f;
        }
    }
    Pipe::run(args, a_tiles, b_tiles, row0, col0, k_begin, k_end, [&](int stage) {
        if (row_sums) {
            tf32_multiply_slice<true>(a_tiles[stage], b_tiles[stage], warp_row, warp_col, lane,
                                      acc, row_sum);
        } else {
            tf32_multiply_slice<false>(a_tiles[stage], b_tiles[stage], warp_row, warp_col, lane,
                                       acc, row_sum);
        }
    });
#pragma unroll 1
    for (int f = 0; f < 2 * 4; ++f) {  // tile (mi, ni) in acc[0] (shift_rows_up)
        const int mi = f / 4, ni = f % 4;
        const int row = row0 + warp_row + mi * 16 + g;
        const int col = col0 + warp_col + ni * 8 + 2 * t;
        gemm_store(args, tile.z, row, col, acc[0][0]);
        gemm_store(args, tile.z, row, col + 1, acc[0][1]);
        gemm_store(args, tile.z, row + 8, col, acc[0][2]);
        gemm_store(args, tile.z, row + 8, col + 1, acc[0][3]);
        shift_rows_up(acc);
    }
    if (row_sums && threadIdx.x < GEMM_BM && row0 + (int)threadIdx.x < args.m) {
        args.row_sums[row0 + threadIdx.x] = row_sum;
    }
    if (args.partials && split_k_last_arrival(args, tile)) {
        split_k_finish_tile<64, TF32_THREADS>(args, tile.splits, row0, col0);
    }
}

FG_KERNEL(gemm_tf32, GemmArgs) { gemm_tf32_block(args, grid_tile()); }

// gemm_pair in the tensor-core kernel: a layer's two gradient products in one launch.
FG_KERNEL(gemm_pair_tf32, GemmPairArgs) {
    gemm_pair_block(args, [](const GemmArgs& product, const GemmTile& tile) {
        gemm_tf32_block(product, tile);
    });
}

// ---------------------------------------------------------------------------------------------
// gemv: a product with one column, c = epilogue(A · b + bias) with A stored [m, k] and b the k
// values of B (n = 1 makes both of B's layouts the same): D's last layer, and its means. One
// warp per row, its lanes reading consecutive elements, the lanes' sums added in a fixed tree:
// one pass over A, where a 64 × 64 tile would compute 63 unused columns and split-K would add a
// rendezvous. Launch: grid ceil(m / 8), 256 threads (8 warps). No dropout or row sums (the host
// sends those products to gemm).

#define GEMV_ROWS_PER_BLOCK 8

FG_KERNEL(gemv, GemmArgs) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * GEMV_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= args.m) {
        return;  // the whole warp: a row is one warp's
    }
    const float* a = args.a + (u64)row * args.k;
    float sum = 0.0f;
    for (int p = lane; p < args.k; p += 32) {
        sum += a[p] * args.b[p];
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        sum += __shfl_down_sync(0xffffffffu, sum, offset);
    }
    if (lane == 0) {
        gemm_finish(args, (u64)row, 0, sum);
    }
}

// ---------------------------------------------------------------------------------------------
// gemm_large: 128 × 128 tiles. Launch: grid (ceil(n / 128), ceil(m / 128)), 256 threads.
//
// Warp tiling: the 8 warps form a 2 × 4 grid of 64 × 32 warp tiles; lane (r = lane / 4,
// c = lane % 4) of a warp owns the 4 × 4 patches at rows {0, 32} + 4r and columns {0, 16} + 4c
// of its warp tile. Its operands of one k step are then two float4 reads of A's slice and two
// of B's, and the 8 distinct A addresses of a warp cover 32 consecutive floats: no shared-memory
// bank conflicts. The k-slices come through the same cp.async Pipeline as gemm's, in rows
// unpadded: an A stored along k is copied 2 wavefronts a copy, not 1 (rows padded by 16 floats
// would spread them, but take LARGE_BK 16's 3 stages past the 48 KiB a block may declare).

#define LARGE_BM 128
#define LARGE_BN 128
// The k-slices' depth and how many are in shared memory at once (16 KiB of it per stage at depth
// 16, 8 at depth 8; 48 KiB at most): tuning-sweep parameters (FERROGRAD_KERNEL_DEFINES). Within
// the 128 registers of two blocks per SM, depth 16 compiles spill-free with 3 stages, not 2.
#ifndef LARGE_BK
#define LARGE_BK 8
#endif
#ifndef LARGE_STAGES
#define LARGE_STAGES 3
#endif
#if (LARGE_BK != 8 && LARGE_BK != 16) || LARGE_STAGES < 2 || LARGE_STAGES * LARGE_BK > 48
#error "LARGE_BK is 8 or 16, LARGE_STAGES 2 to 48 / LARGE_BK"
#endif

// Two blocks per SM (at most 128 registers a thread): with one, a block's barrier would leave
// its SM idle.
FG_KERNEL(gemm_large, GemmArgs, __launch_bounds__(256, 2)) {
    __shared__ __align__(16) float a_tiles[LARGE_STAGES][LARGE_BK][LARGE_BM];
    __shared__ __align__(16) float b_tiles[LARGE_STAGES][LARGE_BK][LARGE_BN];
    using Pipe = Pipeline<LARGE_BM, LARGE_BK, LARGE_STAGES, LARGE_BM, 256, false>;
    const int row0 = blockIdx.y * LARGE_BM;
    const int col0 = blockIdx.x * LARGE_BN;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int warp_row = (warp / 4) * 64, warp_col = (warp % 4) * 32;
    const int lane_row = (lane / 4) * 4, lane_col = (lane % 4) * 4;

    float acc[8][8];
    for (int i = 0; i < 8; ++i) {
        for (int j = 0; j < 8; ++j) {
            acc[i][j] = 0.0f;
        }
    }
    Pipe::run(args, a_tiles, b_tiles, row0, col0, 0, args.k, [&](int buffer) {
#pragma unroll
        for (int p = 0; p < LARGE_BK; ++p) {
            float a_reg[8], b_reg[8];
            for (int half = 0; half < 2; ++half) {
                float4 a4 = *(const float4*)&a_tiles[buffer][p][warp_row + half * 32 + lane_row];
                float4 b4 = *(const float4*)&b_tiles[buffer][p][warp_col + half * 16 + lane_col];
                a_reg[4 * half + 0] = a4.x;
                a_reg[4 * half + 1] = a4.y;
                a_reg[4 * half + 2] = a4.z;
                a_reg[4 * half + 3] = a4.w;
                b_reg[4 * half + 0] = b4.x;
                b_reg[4 * half + 1] = b4.y;
                b_reg[4 * half + 2] = b4.z;
                b_reg[4 * half + 3] = b4.w;
            }
            for (int i = 0; i < 8; ++i) {
                for (int j = 0; j < 8; ++j) {
                    acc[i][j] += a_reg[i] * b_reg[j];
                }
            }
        }
    });
    // Each row of the thread's results is two quads, 16 columns apart.
#pragma unroll 1
    for (int i = 0; i < 8; ++i) {  // row i in acc[0] (shift_rows_up)
        const int row = row0 + warp_row + (i / 4) * 32 + lane_row + i % 4;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int col = col0 + warp_col + half * 16 + lane_col;
            gemm_store_quad(args, 0, row, col, &acc[0][4 * half]);
        }
        shift_rows_up(acc);
    }
}
