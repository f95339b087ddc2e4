// Shared by every kernel file. build.rs prepends it to each .cu for NVRTC; the CPU emulator
// (emulator/emulator.h) includes it before the .cu files.
//
// Every kernel takes one argument, a struct of plain fields that mirrors a #[repr(C)] struct
// in src/backend/cuda/args.rs: one launch path serves NVRTC and the emulator, and a kernel's
// name (the first argument of FG_KERNEL) is written down only here; build.rs collects them.

#ifndef FERROGRAD_EMULATOR
#define FG_KERNEL(name, Args) extern "C" __global__ void name(const Args args)
#endif

typedef unsigned long long u64;
typedef unsigned int u32;

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
    const float* c;
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

// y[i] = f(x[i], p), grid-stride loop.
template <class F>
__device__ __forceinline__ void map_unary(const UnaryArgs& a, F f) {
    for (u64 i = global_thread(); i < a.n; i += grid_stride()) {
        a.y[i] = f(a.x[i], a.p);
    }
}

// out[i] = f(a[i], b[...], p), with b broadcast as `broadcast` says.
template <class F>
__device__ __forceinline__ void map_binary(const BinaryArgs& a, F f) {
    for (u64 i = global_thread(); i < a.n; i += grid_stride()) {
        float b = a.broadcast == BROADCAST_NONE   ? a.b[i]
                  : a.broadcast == BROADCAST_ROWS ? a.b[i % a.cols]
                                                  : a.b[0];
        a.out[i] = f(a.a[i], b, a.p);
    }
}

// out[i] = f(a[i], b[i], c[i], p), grid-stride loop.
template <class F>
__device__ __forceinline__ void map_ternary(const TernaryArgs& a, F f) {
    for (u64 i = global_thread(); i < a.n; i += grid_stride()) {
        a.out[i] = f(a.a[i], a.b[i], a.c[i], a.p);
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
