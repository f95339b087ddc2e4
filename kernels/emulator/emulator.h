// A CPU stand-in for the CUDA runtime, just enough to run our kernels on the host, unchanged:
// - each CUDA thread of a block is a fiber (its own stack, ucontext) on the calling OS thread;
//   the fibers run in turn, each until its next __syncthreads(), which hands over to the
//   next: a real barrier, and a cheap one. Between barriers the threads run one after another
//   in index order, so a missing __syncthreads() makes a thread read shared memory its
//   neighbours have not written yet: wrong results that the parity tests catch;
// - threadIdx / blockIdx / blockDim / gridDim are variables the scheduler sets;
// - __shared__ becomes `static`: storage shared by the threads of a block, which is sound
//   because blocks run one after another;
// - a kernel (FG_KERNEL) registers a launcher under its name at start-up, and
//   ferrograd_emu_launch() runs it, taking its argument as cuLaunchKernel does: an array
//   holding a pointer to the argument struct.
#pragma once

#define FERROGRAD_EMULATOR 1

#include <math.h>
#include <stddef.h>
#include <stdint.h>

struct dim3 {
    unsigned x, y, z;
};

namespace ferrograd_emu {
extern dim3 thread_idx;
extern dim3 block_idx;
extern dim3 block_dim;
extern dim3 grid_dim;
void sync_threads();

using Launcher = void (*)(void** args);
struct Registrar {
    Registrar(const char* name, Launcher launcher);
};
}  // namespace ferrograd_emu

#define threadIdx (::ferrograd_emu::thread_idx)
#define blockIdx (::ferrograd_emu::block_idx)
#define blockDim (::ferrograd_emu::block_dim)
#define gridDim (::ferrograd_emu::grid_dim)
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

inline void __syncthreads() { ferrograd_emu::sync_threads(); }

#define FG_KERNEL(name, Args)                                                         \
    static void name##_body(const Args args);                                         \
    static ::ferrograd_emu::Registrar name##_registrar(                               \
        #name, [](void** argv) { name##_body(*static_cast<const Args*>(argv[0])); }); \
    static void name##_body(const Args args)
