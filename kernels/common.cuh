// Shared by every kernel file. build.rs prepends it to each .cu for NVRTC; the CPU emulator
// (emulator/emulator.h) includes it before the .cu files.
//
// Every kernel takes one argument, a struct of plain fields that mirrors a #[repr(C)] struct
// in src/backend/cuda/args.rs: one launch path serves NVRTC and the emulator, and a kernel's
// name (the first argument of FG_KERNEL) is written down only here; build.rs collects them.

// Every kernel starts with start_after_previous_kernel() (below): the body, name##_body, sees
// the launch's argument struct as `args`. Anything after Args goes before the kernel's name:
// __launch_bounds__(threads, blocks per SM), where occupancy must not depend on how many
// registers the compiler happens to take.
#ifndef FERROGRAD_EMULATOR
#define FG_KERNEL(name, Args, ...)                                 \
    __device__ __forceinline__ void name##_body(const Args& args); \
    extern "C" __global__ void __VA_ARGS__ name(const Args args) { \
        start_after_previous_kernel();                             \
        name##_body(args);                                         \
    }                                                              \
    __device__ __forceinline__ void name##_body(const Args& args)
#endif

// Programmatic dependent launch (sm_90 and later; CudaDevice::set_programmatic_launch): a
// kernel so launched may be scheduled while the one before it in the stream still runs, so
// that its launch costs nothing on the way from one kernel to the next. It must not touch
// memory before griddepcontrol.wait, which returns once the kernel before has finished and its
// writes are visible (and that one waited for its own predecessor, and so on). Then it lets
// the kernel after it be scheduled in turn. Launched without the attribute, both are no-ops.
__device__ __forceinline__ void start_after_previous_kernel() {
#if !defined(FERROGRAD_EMULATOR) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

typedef unsigned long long u64;
typedef unsigned int u32;

// One block's arrival at a rendezvous of the blocks of a launch: *counter += 1, returning the
// count before, with release and acquire semantics at GPU scope. Called by one thread after a
// __syncthreads(): everything the block wrote before the barrier is visible to the block that
// sees this count (release is cumulative over what the barrier ordered before it), and what
// the blocks counted earlier wrote is visible to this one once it passes its next barrier.
// One atomic per block, where __threadfence() in every thread would be a sequentially
// consistent fence (MEMBAR.SC.GPU, which also invalidates L1) per warp.
#ifdef FERROGRAD_EMULATOR
inline u32 arrive_acq_rel(u32* counter) { return ferrograd_emu::arrive(counter); }
#else
__device__ __forceinline__ u32 arrive_acq_rel(u32* counter) {
    u32 before;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;\n"
                 : "=r"(before)
                 : "l"(counter)
                 : "memory");
    return before;
}
#endif

// How the right operand of a binary map lines up with the left (backend::Broadcast).
#define BROADCAST_NONE 0
#define BROADCAST_ROWS 1
#define BROADCAST_SCALAR 2

struct UnaryArgs {
    const float* x;
    float* y;
    u64 n;
    float p;  // the kernel's parameter (a slope, a scale), 0 if it has none
};

struct BinaryArgs {
    const float* a;
    const float* b;
    float* out;
    u64 n;
    u64 cols;  // row length, for BROADCAST_ROWS
    float p;
    int broadcast;
};

struct TernaryArgs {
    const float* a;
    const float* b;
    const float* c;  // one value, used for every element (an incoming scalar gradient)
    float* out;
    u64 n;
    float p;
};

__device__ __forceinline__ u64 global_thread() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ u64 grid_stride() {
    return (u64)gridDim.x * blockDim.x;
}

// Whether every pointer is 16-byte aligned and n a multiple of 4: the maps then move float4s,
// a quarter of the memory instructions. (Allocations are 256-byte aligned; a copy into the
// middle of a buffer, as a concatenation makes, may not be.)
__device__ __forceinline__ bool quads_fit(u64 n, const void* p, const void* q, const void* r) {
    return n % 4 == 0 && (((u64)p | (u64)q | (u64)r) % 16) == 0;
}

// y[i] = f(x[i], p), grid-stride loop.
template <class F>
__device__ __forceinline__ void map_unary(const UnaryArgs& a, F f) {
    if (quads_fit(a.n, a.x, a.y, a.y)) {
        for (u64 q = global_thread(); q < a.n / 4; q += grid_stride()) {
            float4 v = ((const float4*)a.x)[q];
            ((float4*)a.y)[q] = make_float4(f(v.x, a.p), f(v.y, a.p), f(v.z, a.p), f(v.w, a.p));
        }
        return;
    }
    for (u64 i = global_thread(); i < a.n; i += grid_stride()) {
        a.y[i] = f(a.x[i], a.p);
    }
}

// out[i] = f(a[i], b[...], p), with b broadcast as `broadcast` says.
template <class F>
__device__ __forceinline__ void map_binary(const BinaryArgs& a, F f) {
    if (a.broadcast == BROADCAST_NONE && quads_fit(a.n, a.a, a.b, a.out)) {
        for (u64 q = global_thread(); q < a.n / 4; q += grid_stride()) {
            float4 x = ((const float4*)a.a)[q], y = ((const float4*)a.b)[q];
            ((float4*)a.out)[q] =
                make_float4(f(x.x, y.x, a.p), f(x.y, y.y, a.p), f(x.z, y.z, a.p), f(x.w, y.w, a.p));
        }
        return;
    }
    for (u64 i = global_thread(); i < a.n; i += grid_stride()) {
        float b = a.broadcast == BROADCAST_NONE   ? a.b[i]
                  : a.broadcast == BROADCAST_ROWS ? a.b[i % a.cols]
                                                  : a.b[0];
        a.out[i] = f(a.a[i], b, a.p);
    }
}

// out[i] = f(a[i], b[i], c[0], p), grid-stride loop.
template <class F>
__device__ __forceinline__ void map_ternary(const TernaryArgs& a, F f) {
    for (u64 i = global_thread(); i < a.n; i += grid_stride()) {
        a.out[i] = f(a.a[i], a.b[i], a.c[0], a.p);
    }
}

// The activations, shared by their elementwise kernels and the GEMM epilogues. Each mirrors the
// Rust kernel of the same name in src/ops/<op>.rs.
__device__ __forceinline__ float relu_forward(float x) { return x <= 0.0f ? 0.0f : x; }
__device__ __forceinline__ float leaky_relu_forward(float x, float slope) { return x > 0.0f ? x : slope * x; }
__device__ __forceinline__ float tanh_forward(float x) { return tanhf(x); }
// 1 / (1 + e^−x), evaluated so that e^(·) never overflows.
__device__ __forceinline__ float sigmoid_forward(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);
    return e / (1.0f + e);
}

// Their backward rules, ∂L/∂x from the saved value and g = ∂L/∂y, shared by the elementwise
// backward kernels (elementwise.cu) and the GEMM's left-operand rules (gemm.cu, a fused layer's
// ∂L/∂z computed as its products read ∂L/∂y). Each mirrors the Rust kernel of the same name.
// ReLU and LeakyReLU (slope > 0) take their output, whose sign is their input's.
// As PyTorch's threshold_backward: a NaN output passes the gradient on (src/ops/relu.rs).
__device__ __forceinline__ float relu_backward(float y, float g) { return y <= 0.0f ? 0.0f : g; }
__device__ __forceinline__ float leaky_relu_backward(float x, float g, float slope) { return x > 0.0f ? g : slope * g; }
// Explicitly rounded: NVRTC would fuse 1 − y·y into an FMA where it sees fit, so two kernels
// (or the CPU) could differ in the last bit.
__device__ __forceinline__ float tanh_backward(float y, float g) {
    return __fmul_rn(g, __fsub_rn(1.0f, __fmul_rn(y, y)));
}
__device__ __forceinline__ float sigmoid_backward(float y, float g) { return g * y * (1.0f - y); }

// Binary cross-entropy of one prediction p against its target t (src/ops/bce.rs), each log
// clamped at −100 as PyTorch does, so that p ∈ {0, 1} gives a finite loss. Not fmaxf, which
// returns −100 for NaN: a prediction outside [0, 1], or NaN, has a NaN loss.
__device__ __forceinline__ float clamped_log(float x) {
    float l = logf(x);
    return l < -100.0f ? -100.0f : l;
}
// p(1 − p) floored at 1e-12 for the gradient; NaN where p is outside [0, 1] (p(1 − p) < 0).
// NVRTC has no NAN macro without the standard headers: a quiet NaN's bits instead.
__device__ __forceinline__ float bce_floored_variance(float p) {
    float variance = p * (1.0f - p);
    return variance < 0.0f ? __int_as_float(0x7fc00000) : (variance < 1e-12f ? 1e-12f : variance);
}
__device__ __forceinline__ float bce_loss(float p, float t) {
    return -(t * clamped_log(p) + (1.0f - t) * clamped_log(1.0f - p));
}

// Philox4x32-10 (Salmon et al., SC'11), exactly as src/rng.rs: value i of a draw is lane i % 4
// of counter block first_block + i / 4, key = the seed. One seed gives the same numbers on every
// device, and any thread can compute any value: random.cu's fills and the GEMM's dropout
// epilogue (gemm.cu) both draw from here.

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

// Where a draw's values come from (PhiloxDraw in src/backend/cuda/args.rs).
struct PhiloxDraw {
    u64 first_block;
    // Null, or a generator's state in device memory: {offset, key}. A captured graph's draws
    // read it, first_block relative to its offset, so that each replay continues the stream
    // (see philox_advance in random.cu) of whatever generator the host put there.
    const u64* generator;
    u32 key0;
    u32 key1;
};

// The draw with the device-side generator (if any) folded in: first_block absolute, the key
// from the generator.
__device__ __forceinline__ PhiloxDraw philox_resolve(PhiloxDraw draw) {
    if (draw.generator) {
        draw.first_block += draw.generator[0];
        draw.key0 = (u32)draw.generator[1];
        draw.key1 = (u32)(draw.generator[1] >> 32);
        draw.generator = 0;
    }
    return draw;
}

__device__ __forceinline__ u32 mul_hi(u32 a, u32 b) {
    return (u32)(((u64)a * b) >> 32);
}

// The four random words of block `block` of a resolved draw.
__device__ __forceinline__ void philox_block(const PhiloxDraw& draw, u64 block, u32 c[4]) {
    u64 counter = draw.first_block + block;
    c[0] = (u32)counter;
    c[1] = (u32)(counter >> 32);
    c[2] = 0u;
    c[3] = 0u;
    u32 k0 = draw.key0, k1 = draw.key1;
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        u32 hi0 = mul_hi(PHILOX_M0, c[0]), lo0 = PHILOX_M0 * c[0];
        u32 hi1 = mul_hi(PHILOX_M1, c[2]), lo1 = PHILOX_M1 * c[2];
        u32 next[4] = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
        for (int i = 0; i < 4; ++i) {
            c[i] = next[i];
        }
    }
}

// [0, 1) from the top 24 bits; (0, 1] for the logarithm of Box–Muller.
__device__ __forceinline__ float unit(u32 bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }
__device__ __forceinline__ float unit_nonzero(u32 bits) { return (float)((bits >> 8) + 1) * (1.0f / 16777216.0f); }

// An inverted-dropout mask value: 1 / (1 − p) with probability 1 − p, else 0
// (Distribution::DropoutMask::sample_block).
__device__ __forceinline__ float dropout_mask_value(u32 bits, float p) {
    float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    return unit(bits) >= p ? keep_scale : 0.0f;
}

// Value i of a resolved draw of dropout masks, alone: a whole Philox block for one of its four
// lanes, for the kernels whose threads own single elements (the GEMM epilogue).
__device__ __forceinline__ float dropout_mask_at(const PhiloxDraw& draw, float p, u64 i) {
    u32 w[4];
    philox_block(draw, i / 4, w);
    u32 lane = (u32)(i % 4);
    // Selects, not w[lane]: a dynamic index would put w in local memory.
    u32 bits = lane == 0 ? w[0] : lane == 1 ? w[1] : lane == 2 ? w[2] : w[3];
    return dropout_mask_value(bits, p);
}
