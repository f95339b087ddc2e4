// A CPU stand-in for the CUDA runtime, just enough to run our kernels on the host, unchanged:
// - each CUDA thread of a block is a fiber (a stack of its own) on the calling OS thread;
//   the fibers run in turn, each until it waits at a barrier: __syncthreads() (all threads of
//   the block) or a warp shuffle (the 32 lanes of its warp). A barrier releases its waiters
//   once every thread it concerns has arrived; one that can never be released, or that some
//   of its threads returned before reaching (a hang or undefined behaviour on a GPU), is
//   reported, not hung on. Between barriers the threads run one after another: in index
//   order, or for tests reversed or shuffled (ferrograd_emu_set_thread_order), so a missing
//   __syncthreads() makes a thread read shared memory its neighbours have not written yet, or
//   have already overwritten, in one order or the other: results that differ between orders;
// - warp shuffles (__shfl_sync, __shfl_down_sync, __shfl_xor_sync) exchange values through
//   per-lane slots between two warp barriers; every lane of the warp must take part (the
//   mask is not consulted), as in our kernels;
// - atomics (arrive_acq_rel in common.cuh, through arrive below) are plain read-modify-writes:
//   fibers are never preempted; where blocks run interleaved, an arrival is where the runtime
//   may switch to another block;
// - asynchronous copies to shared memory (cp.async) land only when their thread waits for
//   them, their destinations NaN until then (see copy_async below);
// - threadIdx / blockIdx / blockDim / gridDim are variables the scheduler sets; blocks run in
//   the grid's order or, for tests, a shuffled one, one after another or two at a time,
//   interleaved (ferrograd_emu_set_block_order): a GPU promises no order;
// - __shared__ becomes `static`, in a section the runtime swaps per block (below), poisoned
//   (NaN) as each block starts;
// - a kernel (FG_KERNEL) registers a launcher under its name at start-up, with its
//   __launch_bounds__, and ferrograd_emu_launch() runs it, taking its argument as
//   cuLaunchKernel does (an array holding a pointer to the argument struct) and refusing the
//   geometries cuLaunchKernel refuses; the sweep variants of gemm.cu (build.rs,
//   kernels/sweep.txt) register theirs under their macro definitions too, and
//   ferrograd_emu_set_kernel_defines() makes later launches run one of them; a launch may
//   also name a variant itself ("gemm|-DFG_EMULATED_ARCH=750", the emulated Turing GPU's);
// - __trap() fails the launch (error 7), as it stops the kernel on a GPU; the thread that
//   called it runs on to its next barrier or its end (a fiber is not unwound), and the block
//   is the launch's last;
// - a traced launch (ferrograd_emu_launch_traced) runs the kernels build.rs compiled to report
//   each load and store, and counts the shared-memory bank conflicts of its warps' requests
//   (shared_trace.cpp).
#pragma once

#define FERROGRAD_EMULATOR 1

#include <math.h>
#include <stddef.h>
#include <stdint.h>

struct dim3 {
    unsigned x, y, z;
};

// __shared__ storage lives in a section of its own, which the runtime fills with 0xff bytes
// (NaN as a float or double, -1 as an int) before each block runs: on a GPU a block's shared
// memory starts as whatever was there, so a thread that reads a word nobody in its block wrote
// yet must not meet the last block's value, which would often be the right one. When blocks
// run interleaved (runtime.cpp), the section is saved and restored as the runtime switches
// between them, so each has its own. One section per translation unit (build.rs names each
// unit's FG_SHARED_SECTION_NAME: the sweep variants', the traced kernels'), found through the
// linker's __start_ and __stop_ symbols, which each kernel registers with: a launch poisons
// and saves its own unit's variables only, not every variant's.
//
// Only function-local statics of vague linkage, in inline functions, may be in it: GCC will
// not mix them with other variables in one named section, and it ignores the attribute on a
// function template's statics, which would land in ordinary memory, neither poisoned nor
// saved per block. So a __shared__ variable is declared in a kernel's body or in an inline
// function, never in a template (gemm.cu's GemmStages).
#ifndef FG_SHARED_SECTION_NAME
#define FG_SHARED_SECTION_NAME ferrograd_shared
#endif
#define FG_STRINGIFY_(x) #x
#define FG_STRINGIFY(x) FG_STRINGIFY_(x)
#define FG_CONCAT_(a, b) a##b
#define FG_CONCAT(a, b) FG_CONCAT_(a, b)
#define FG_SHARED_SECTION __attribute__((section(FG_STRINGIFY(FG_SHARED_SECTION_NAME))))
extern "C" char FG_CONCAT(__start_, FG_SHARED_SECTION_NAME)[];
extern "C" char FG_CONCAT(__stop_, FG_SHARED_SECTION_NAME)[];

namespace ferrograd_emu {
extern dim3 thread_idx;
extern dim3 block_idx;
extern dim3 block_dim;
extern dim3 grid_dim;
void sync_threads();
void sync_warp();
unsigned thread_rank();
// The running block's exchange slots, one per thread, for warp shuffles and for the TF32
// MMA's fragments (each live block has its own: runtime.cpp).
extern double* shuffle_slots;
extern unsigned (*mma_a_slots)[4];
extern unsigned (*mma_b_slots)[2];

// cp.async, as the GPU may run it (runtime.cpp): a copy issued now is in flight until this
// thread waits for its group, so its destination holds NaN until then — a kernel that reads a
// stage before waiting for it, or refills one another thread still reads, computes NaNs
// instead of passing by luck.
void copy_async(float* shared, const float* global, unsigned floats, bool valid);
void copy_async_commit();
void copy_async_wait(unsigned pending);

// An atomic *counter += 1, returning the count before: a block's arrival at a rendezvous of
// the launch's blocks (arrive_acq_rel). Where blocks run interleaved, the runtime may run
// other blocks before this thread goes on — as a GPU may, which shows a block that arrives
// before all it must publish is written.
unsigned arrive(unsigned* counter);

// __trap(): the launch in progress fails (runtime.cpp).
void trap();

using Launcher = void (*)(void** args);
// Registers a kernel under its name, and for a sweep variant of gemm.cu (build.rs) under its
// macro definitions as well (`variant`, "" for the defaults), with its unit's __shared__
// section (shared_first..shared_end) and the most threads a block of it may have
// (`max_threads`: its __launch_bounds__, 0 if it declares none).
struct Registrar {
    Registrar(const char* name, const char* variant, Launcher launcher, char* shared_first,
              char* shared_end, unsigned max_threads);
};
}  // namespace ferrograd_emu

#define threadIdx (::ferrograd_emu::thread_idx)
#define blockIdx (::ferrograd_emu::block_idx)
#define blockDim (::ferrograd_emu::block_dim)
#define gridDim (::ferrograd_emu::grid_dim)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static FG_SHARED_SECTION
#define __align__(n) __attribute__((aligned(n)))

struct alignas(16) float4 {
    float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
struct alignas(8) float2 {
    float x, y;
};

// CUDA's explicitly rounded arithmetic, which the compiler never fuses into an FMA.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __int_as_float(int bits) {
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}

inline int min(int a, int b) { return a < b ? a : b; }

inline void __syncthreads() { ferrograd_emu::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ferrograd_emu::sync_warp(); }
inline void __trap() { ferrograd_emu::trap(); }

// Lane `source_lane(lane)` of the warp's values of `value`.
template <class T, class F>
T ferrograd_shuffle(T value, F source_lane) {
    unsigned rank = ferrograd_emu::thread_rank();
    unsigned lane = rank % 32, warp_base = rank - lane;
    ferrograd_emu::shuffle_slots[rank] = (double)value;
    ferrograd_emu::sync_warp();
    unsigned source = source_lane(lane);
    T result = source < 32 ? (T)ferrograd_emu::shuffle_slots[warp_base + source] : value;
    ferrograd_emu::sync_warp();  // nobody overwrites a slot before every lane has read
    return result;
}
template <class T>
T __shfl_sync(unsigned, T value, int src_lane, int = 32) {
    return ferrograd_shuffle(value, [&](unsigned) { return (unsigned)src_lane % 32; });
}
template <class T>
T __shfl_down_sync(unsigned, T value, unsigned delta, int = 32) {
    return ferrograd_shuffle(value, [&](unsigned lane) { return lane + delta; });
}
template <class T>
T __shfl_xor_sync(unsigned, T value, int mask, int = 32) {
    return ferrograd_shuffle(value, [&](unsigned lane) { return lane ^ (unsigned)mask; });
}

// cvt.rna.tf32.f32: keep 10 mantissa bits, rounding to nearest, ties away from zero.
inline unsigned ferrograd_to_tf32(float x) {
    unsigned bits;
    __builtin_memcpy(&bits, &x, 4);
    if ((bits & 0x7f800000u) != 0x7f800000u) {  // finite: round the 13 dropped bits
        bits = (bits + 0x1000u) & ~0x1fffu;
    }
    return bits;
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, c += A·B, each lane holding its
// fragments (layouts in kernels/gemm.cu). The lanes publish their fragments, meet at a warp
// barrier, and each computes its four results from everyone's.
inline void ferrograd_mma_m16n8k8_tf32(float c[4], const unsigned a[4], const unsigned b[2]) {
    unsigned(*a_slots)[4] = ferrograd_emu::mma_a_slots;
    unsigned(*b_slots)[2] = ferrograd_emu::mma_b_slots;
    unsigned rank = ferrograd_emu::thread_rank();
    unsigned lane = rank % 32, warp_base = rank - lane;
    for (int i = 0; i < 4; ++i) a_slots[rank][i] = a[i];
    for (int i = 0; i < 2; ++i) b_slots[rank][i] = b[i];
    ferrograd_emu::sync_warp();
    auto as_float = [](unsigned bits) {
        float f;
        __builtin_memcpy(&f, &bits, 4);
        return f;
    };
    unsigned g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r) {
        unsigned row = g + (r >= 2 ? 8 : 0), col = 2 * t + (r & 1);
        float sum = c[r];
        for (unsigned k = 0; k < 8; ++k) {
            // A(row, k) is register (row >= 8) + 2·(k >= 4) of lane 4·(row % 8) + k % 4;
            // B(k, col) is register (k >= 4) of lane 4·col + k % 4.
            unsigned a_lane = warp_base + 4 * (row % 8) + k % 4;
            unsigned b_lane = warp_base + 4 * col + k % 4;
            float a_value = as_float(a_slots[a_lane][(row >= 8) + 2 * (k >= 4)]);
            float b_value = as_float(b_slots[b_lane][k >= 4]);
            sum += a_value * b_value;
        }
        c[r] = sum;
    }
    ferrograd_emu::sync_warp();  // nobody overwrites a slot before every lane has read
}

// Blocks run one after another, each to its end: whatever a block wrote, later blocks see.
template <class T>
T __ldcg(const T* address) {
    return *address;
}

// The compile-time variant this translation unit's kernels are (build.rs defines it for each
// line of kernels/sweep.txt).
#ifndef FG_EMULATOR_VARIANT
#define FG_EMULATOR_VARIANT ""
#endif

// The body is `inline` (vague linkage), as every function holding a __shared__ variable must
// be: GCC will not put variables of internal and of vague linkage in one named section. What
// follows Args, if anything, is __launch_bounds__(threads, blocks per SM), which becomes
// "+threads": the registrar's max_threads is then 0 + threads, or 0 without it.
#define __launch_bounds__(threads, blocks_per_sm) +(threads)
#define FG_KERNEL(name, Args, ...)                                                  \
    inline void name##_body(const Args args);                                       \
    static ::ferrograd_emu::Registrar name##_registrar(                             \
        #name, FG_EMULATOR_VARIANT,                                                 \
        [](void** argv) { name##_body(*static_cast<const Args*>(argv[0])); },       \
        FG_CONCAT(__start_, FG_SHARED_SECTION_NAME),                                \
        FG_CONCAT(__stop_, FG_SHARED_SECTION_NAME), 0u __VA_ARGS__);                \
    inline void name##_body(const Args args)
