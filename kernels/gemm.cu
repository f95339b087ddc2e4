// C[m, n] = epilogue(op(A)[m, k] · op(B)[k, n] (+ bias[n] on every row)), the three products
// a linear layer needs (X·Wᵀ, dY·W, dYᵀ·X) without materialising a transpose: A is stored
// [m, k] or, when lhs_transposed, [k, m]; B is stored [k, n] or, when rhs_transposed, [n, k].
// The epilogue is the identity (`gemm`) or an activation (`gemm_<activation>`), applied as
// each result leaves its register: a linear layer and its activation in one kernel.
//
// Shared-memory tiling with register blocking: a block of 16 × 16 threads computes a
// GEMM_BM × GEMM_BN tile of C, each thread a GEMM_TM × GEMM_TN patch held in registers. Each
// step of GEMM_BK along k stages a slice of A and of B in shared memory, which every thread of
// the block then reuses GEMM_TN (resp. GEMM_TM) times. Launch: grid (ceil(n / 64),
// ceil(m / 64)), 256 threads.

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_TM 4
#define GEMM_TN 4
#define GEMM_THREADS 256

struct GemmArgs {
    const float* a;
    const float* b;
    const float* bias;  // null for none
    float* c;
    int m;
    int k;
    int n;
    int lhs_transposed;
    int rhs_transposed;
    float p;  // the epilogue's parameter (LeakyReLU's slope)
};

template <class Epilogue>
__device__ void gemm_tiles(const GemmArgs& args, Epilogue epilogue) {
    // k-major tiles: a thread's GEMM_TM (resp. GEMM_TN) operands of one k step are adjacent.
    __shared__ float a_tile[GEMM_BK][GEMM_BM];
    __shared__ float b_tile[GEMM_BK][GEMM_BN];
    const int tx = threadIdx.x % 16;
    const int ty = threadIdx.x / 16;
    const int row0 = blockIdx.y * GEMM_BM;
    const int col0 = blockIdx.x * GEMM_BN;
    float acc[GEMM_TM][GEMM_TN];
    for (int i = 0; i < GEMM_TM; ++i) {
        for (int j = 0; j < GEMM_TN; ++j) {
            acc[i][j] = 0.0f;
        }
    }
    for (int k0 = 0; k0 < args.k; k0 += GEMM_BK) {
        for (int e = threadIdx.x; e < GEMM_BM * GEMM_BK; e += GEMM_THREADS) {
            // Consecutive threads take consecutive k (A stored [m, k]) or rows (stored [k, m]).
            int r = args.lhs_transposed ? e % GEMM_BM : e / GEMM_BK;
            int p = args.lhs_transposed ? e / GEMM_BM : e % GEMM_BK;
            int row = row0 + r, kk = k0 + p;
            float v = 0.0f;
            if (row < args.m && kk < args.k) {
                v = args.lhs_transposed ? args.a[(u64)kk * args.m + row] : args.a[(u64)row * args.k + kk];
            }
            a_tile[p][r] = v;
        }
        for (int e = threadIdx.x; e < GEMM_BK * GEMM_BN; e += GEMM_THREADS) {
            int p = args.rhs_transposed ? e % GEMM_BK : e / GEMM_BN;
            int c = args.rhs_transposed ? e / GEMM_BK : e % GEMM_BN;
            int col = col0 + c, kk = k0 + p;
            float v = 0.0f;
            if (col < args.n && kk < args.k) {
                v = args.rhs_transposed ? args.b[(u64)col * args.k + kk] : args.b[(u64)kk * args.n + col];
            }
            b_tile[p][c] = v;
        }
        __syncthreads();
        for (int p = 0; p < GEMM_BK; ++p) {
            float a_reg[GEMM_TM];
            float b_reg[GEMM_TN];
            for (int i = 0; i < GEMM_TM; ++i) {
                a_reg[i] = a_tile[p][ty * GEMM_TM + i];
            }
            for (int j = 0; j < GEMM_TN; ++j) {
                b_reg[j] = b_tile[p][tx * GEMM_TN + j];
            }
            for (int i = 0; i < GEMM_TM; ++i) {
                for (int j = 0; j < GEMM_TN; ++j) {
                    acc[i][j] += a_reg[i] * b_reg[j];
                }
            }
        }
        __syncthreads();
    }
    for (int i = 0; i < GEMM_TM; ++i) {
        int row = row0 + ty * GEMM_TM + i;
        for (int j = 0; j < GEMM_TN; ++j) {
            int col = col0 + tx * GEMM_TN + j;
            if (row < args.m && col < args.n) {
                float bias = args.bias ? args.bias[col] : 0.0f;
                args.c[(u64)row * args.n + col] = epilogue(acc[i][j] + bias, args.p);
            }
        }
    }
}

FG_KERNEL(gemm, GemmArgs) { gemm_tiles(args, [](float x, float) { return x; }); }
FG_KERNEL(gemm_relu, GemmArgs) { gemm_tiles(args, [](float x, float) { return relu_forward(x); }); }
FG_KERNEL(gemm_leaky_relu, GemmArgs) {
    gemm_tiles(args, [](float x, float slope) { return leaky_relu_forward(x, slope); });
}
FG_KERNEL(gemm_tanh, GemmArgs) { gemm_tiles(args, [](float x, float) { return tanh_forward(x); }); }
FG_KERNEL(gemm_sigmoid, GemmArgs) { gemm_tiles(args, [](float x, float) { return sigmoid_forward(x); }); }
