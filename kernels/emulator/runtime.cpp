// The emulator's launch loop (see emulator.h). build.rs compiles it in one translation unit
// with every kernel file and shared_trace.cpp, and each sweep variant of gemm.cu in a unit of
// its own.

#include <math.h>
#include <stdint.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ferrograd_emu {

dim3 thread_idx;
dim3 block_idx;
dim3 block_dim;
dim3 grid_dim;
double* shuffle_slots;
unsigned (*mma_a_slots)[4];
unsigned (*mma_b_slots)[2];

// A registered kernel: how to run it, its unit's __shared__ section, and the most threads a
// block of it may have.
struct Kernel {
    Launcher launch;
    char* shared_first;
    char* shared_end;
    unsigned max_threads;
};

// Every kernel under its name; a sweep variant's under "name|definitions".
static std::map<std::string, Kernel>& registry() {
    static std::map<std::string, Kernel> kernels;
    return kernels;
}

// The sweep variants' definitions, in the order they registered (all at start-up). Not the
// traced kernels' (shared_trace.cpp): they are no variant a sweep can choose.
static std::vector<std::string>& variants() {
    static std::vector<std::string> known;
    return known;
}

// Whether the traced kernels registered (ferrograd_emu_can_trace_shared_memory).
static bool traced_kernels_registered = false;

// The variant launches run (an index into variants()), or -1: the defaults.
static std::atomic<int> current_variant{-1};

Registrar::Registrar(const char* name, const char* variant, Launcher launcher,
                     char* shared_first, char* shared_end, unsigned max_threads) {
    std::string key = name;
    if (*variant != '\0') {
        key = key + "|" + variant;
        if (std::string(variant) == TRACE_SHARED_MEMORY_VARIANT) {
            traced_kernels_registered = true;
        } else if (std::find(variants().begin(), variants().end(), variant) ==
                   variants().end()) {
            variants().push_back(variant);
        }
    }
    registry()[key] =
        Kernel{launcher, shared_first, shared_end, max_threads != 0 ? max_threads : 1024};
}

// The kernel a launch of `name` runs. A name with its variant ("gemm|-DFG_EMULATED_ARCH=750")
// runs that variant's, or the kernel of that name where the variant has none (only gemm.cu
// has variants); otherwise the current variant's, if it has one by that name.
static std::map<std::string, Kernel>::iterator find_kernel(const char* name) {
    const std::string named = name;
    const size_t bar = named.find('|');
    if (bar != std::string::npos) {
        auto kernel = registry().find(named);
        return kernel != registry().end() ? kernel : registry().find(named.substr(0, bar));
    }
    const int variant = current_variant.load();
    if (variant >= 0) {
        auto kernel = registry().find(std::string(name) + "|" + variants()[variant]);
        if (kernel != registry().end()) {
            return kernel;
        }
    }
    return registry().find(name);
}

// Bytes of stack per CUDA thread: our kernels keep a few dozen floats in "registers".
static const size_t FIBER_STACK = 128 * 1024;

// Switching between fibers. swapcontext saves and restores the signal mask, a system call
// (rt_sigprocmask), and the x87 environment at every switch: the emulator's tests spent a
// third of their time in the system, and run 4–7× faster without it (benches/RESULTS.md,
// 2026-12-07). A fiber needs only its stack and the registers a function call keeps (the
// ABI's callee-saved ones; the floating-point control registers are the same in every fiber:
// nothing here changes them), so on x86-64 and on AArch64 a switch saves those on the stack it
// leaves, keeps that stack's address, and loads the other's: no system call. Elsewhere, and
// where the compiler builds code for a shadow stack of return addresses (x86's CET, Arm's
// GCS, which a hand-made switch would break), ucontext as before.
#if defined(__x86_64__) && !(defined(__CET__) && (__CET__ & 2))
#define FG_EMU_OWN_SWITCH 1
#elif defined(__aarch64__) && !defined(__ARM_FEATURE_GCS_DEFAULT)
#define FG_EMU_OWN_SWITCH 1
#endif
// Under AddressSanitizer the hand-made switch tells it of each change of stack (below);
// swapcontext's it follows by itself.
#if defined(__SANITIZE_ADDRESS__)
#define FG_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FG_EMU_ASAN 1
#endif
#endif
#if defined(FG_EMU_OWN_SWITCH) && defined(FG_EMU_ASAN)
#define FG_EMU_TELL_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#ifdef FG_EMU_OWN_SWITCH
// A fiber stopped at a switch: its stack pointer; the rest is on its stack.
struct Context {
    void* sp = nullptr;
#ifdef FG_EMU_TELL_ASAN
    const void* stack_bottom = nullptr;  // the stack it runs on
    size_t stack_size = 0;
#endif
};
#else
struct Context {
    ucontext_t uc;
};
#endif

static Context scheduler;  // where a fiber returns to at a barrier, a pause or its end

// What a stack just switched to does first. AddressSanitizer keeps the bounds of the stack
// running (to tell a stack address from a heap one): a change of stack is told to it before,
// with the stack to run on, and finished here, on that stack, where it returns the bounds of
// the one left. A fiber is only ever switched to from the scheduler, which runs on the stack
// of whichever thread launched: the bounds a fiber is told on arrival are the scheduler's,
// kept for its switch back. (Null for the "fake stacks" of ASan's stack-use-after-return
// check, which is off: scripts/emulator-asan.sh.)
static void finish_switch(const Context& here) {
#ifdef FG_EMU_TELL_ASAN
    const void* left_bottom;
    size_t left_size;
    __sanitizer_finish_switch_fiber(nullptr, &left_bottom, &left_size);
    if (&here != &scheduler) {
        scheduler.stack_bottom = left_bottom;
        scheduler.stack_size = left_size;
    }
#else
    (void)here;
#endif
}

#ifdef FG_EMU_OWN_SWITCH
// Saves the callee-saved registers on the running stack and its address in *save, then makes
// `load` the stack and returns to whoever switched away from it. A stopped fiber's stack holds,
// from its stack pointer up, SWITCH_FRAME_WORDS words: the registers, the address the switch
// returns to at word SWITCH_RETURN_WORD (start_context lays out a new fiber's the same way).
extern "C" void ferrograd_emu_switch(void** save, void* load);
// (In a section pushed and popped: the compiler's idea of the current section stays true.)
#if defined(__x86_64__)
// From the stack pointer up: r15–r12, rbx, rbp; the return address `call` pushed; and above
// it, for a new fiber, the entry function's own return address (none), so that rsp + 8 is a
// multiple of 16 at the entry's first instruction, as after a call.
static const int SWITCH_FRAME_WORDS = 8, SWITCH_RETURN_WORD = 6;
asm(R"(
    .pushsection .text
    .p2align 4
    .globl ferrograd_emu_switch
    .hidden ferrograd_emu_switch
    .type ferrograd_emu_switch, @function
ferrograd_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ferrograd_emu_switch, .-ferrograd_emu_switch
    .popsection
)");
#else
// AArch64 (AAPCS64): x19–x28, the frame pointer x29, the return address in the link register
// x30 (which `ret` jumps to), and the low halves of v8–v15 (d8–d15): 160 bytes, keeping sp a
// multiple of 16 as the architecture requires.
static const int SWITCH_FRAME_WORDS = 20, SWITCH_RETURN_WORD = 11;
asm(R"(
    .pushsection .text
    .p2align 4
    .globl ferrograd_emu_switch
    .hidden ferrograd_emu_switch
    .type ferrograd_emu_switch, %function
ferrograd_emu_switch:
    sub sp, sp, #160
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #160
    ret
    .size ferrograd_emu_switch, .-ferrograd_emu_switch
    .popsection
)");
#endif

static void switch_context(Context& from, const Context& to) {
#ifdef FG_EMU_TELL_ASAN
    __sanitizer_start_switch_fiber(nullptr, to.stack_bottom, to.stack_size);
#endif
    ferrograd_emu_switch(&from.sp, to.sp);
    finish_switch(from);
}

// Makes `fiber` start `entry` (which never returns) on `stack` at its first switch: at the
// stack's top (a multiple of 16), a frame as ferrograd_emu_switch leaves one, every register
// zero (a null frame pointer ends the chain a debugger walks) and `entry` its return address.
static void start_context(Context& fiber, std::vector<char>& stack, void (*entry)()) {
    void** top = (void**)((uintptr_t)(stack.data() + stack.size()) & ~(uintptr_t)15);
    void** sp = top - SWITCH_FRAME_WORDS;
    std::fill(sp, top, nullptr);
    sp[SWITCH_RETURN_WORD] = (void*)entry;
    fiber.sp = sp;
#ifdef FG_EMU_TELL_ASAN
    fiber.stack_bottom = stack.data();
    fiber.stack_size = stack.size();
    // The stack's last fiber left frames that never returned (its run_fiber, and all of a
    // kernel stopped at a barrier that was never released), their redzones still poisoned.
    __asan_unpoison_memory_region(stack.data(), stack.size());
#endif
}
#else
static void switch_context(Context& from, const Context& to) { swapcontext(&from.uc, &to.uc); }

static void start_context(Context& fiber, std::vector<char>& stack, void (*entry)()) {
    getcontext(&fiber.uc);
    fiber.uc.uc_stack.ss_sp = stack.data();
    fiber.uc.uc_stack.ss_size = stack.size();
    fiber.uc.uc_link = nullptr;  // entry never returns
    makecontext(&fiber.uc, entry, 0);
}
#endif

// Where a thread of the block stands.
enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

// One thread's cp.async copies in flight: the groups it has committed, oldest first, and the
// copies issued since its last commit.
struct AsyncCopy {
    float* shared;
    const float* global;
    unsigned floats;
    bool valid;
};
struct AsyncCopies {
    std::vector<std::vector<AsyncCopy>> committed;
    std::vector<AsyncCopy> open;
};

// A block's slots for what its threads exchange through the emulator (emulator.h).
struct ExchangeSlots {
    double shuffle[1024];
    unsigned mma_a[1024][4];
    unsigned mma_b[1024][2];
};

// A block the launch has started: one fiber per thread, where each stands, its copies in
// flight, and its __shared__ section while another block runs.
struct Block {
    dim3 index;
    std::vector<Context> fibers;
    std::vector<std::vector<char>> stacks;
    std::vector<State> state;
    std::vector<AsyncCopies> async_copies;
    std::vector<unsigned> order;  // the order its threads run in this stretch
    std::vector<char> shared;     // its __shared__ section, while switched out
    std::unique_ptr<ExchangeSlots> exchange = std::make_unique<ExchangeSlots>();
    SharedTrace trace;            // its threads' shared-memory accesses, in a traced launch
    unsigned current = 0;         // the thread running, or the last to run
    bool fresh = false;           // started, its shared memory not yet poisoned
    bool paused = false;          // a thread arrived at an atomic and let other blocks run
};

static unsigned block_threads;   // threads per block of the launch in progress
static Launcher launch_kernel;   // and its kernel and argument
static void** launch_args;
static Block* block = nullptr;   // the block running
static Block* shared_owner = nullptr;  // the block whose shared memory the section holds
static SharedTraffic* traced = nullptr;  // where a traced launch counts its bank traffic

// (The __shared__ section of the launch in progress, shared_first..shared_end, is declared in
// shared_trace.cpp, whose hooks read it too.)

unsigned thread_rank() { return block->current; }

// Makes `b` the running block: its shared memory into the section (the other's saved), or
// the section poisoned if `b` has just started.
static void switch_to(Block& b) {
    char *first = shared_first, *end = shared_end;
    if (shared_owner != &b) {
        if (shared_owner != nullptr) shared_owner->shared.assign(first, end);
        if (!b.fresh) std::copy(b.shared.begin(), b.shared.end(), first);
        shared_owner = &b;
    }
    if (b.fresh) {
        std::fill(first, end, (char)0xff);
        b.fresh = false;
    }
    block = &b;
    block_idx = b.index;
    shuffle_slots = b.exchange->shuffle;
    mma_a_slots = b.exchange->mma_a;
    mma_b_slots = b.exchange->mma_b;
    shared_trace = traced != nullptr ? &b.trace : nullptr;
}

// In a traced launch, counts the shared-memory requests of the running block's threads
// first..end since their last barrier, warp by warp (shared_trace.cpp).
static void count_shared_requests(unsigned first, unsigned end) {
    for (unsigned base = first; traced != nullptr && base < end; base += 32) {
        block->trace.count_warp(base, std::min(base + 32, end), *traced);
    }
}

// Whether the launch in progress made a 16-byte copy of an address that is not a multiple of
// 16, which stops a kernel on a GPU ("misaligned address").
static bool misaligned = false;

// Whether a thread of the launch in progress called __trap().
static bool trapped = false;

void trap() { trapped = true; }

void copy_async(float* shared, const float* global, unsigned floats, bool valid) {
    if (floats == 4 && valid && ((uintptr_t)global % 16 != 0 || (uintptr_t)shared % 16 != 0)) {
        misaligned = true;
    }
    for (unsigned i = 0; i < floats; ++i) {
        shared[i] = NAN;  // not there yet
    }
    // The copy's write to shared memory, in a traced launch; its site the kernel's call.
    trace_access(shared, 4 * floats, AccessKind::Copy, __builtin_return_address(0));
    block->async_copies[block->current].open.push_back(AsyncCopy{shared, global, floats, valid});
}

void copy_async_commit() {
    AsyncCopies& copies = block->async_copies[block->current];
    copies.committed.push_back(std::move(copies.open));
    copies.open.clear();
}

void copy_async_wait(unsigned pending) {
    AsyncCopies& copies = block->async_copies[block->current];
    while (copies.committed.size() > pending) {
        for (const AsyncCopy& copy : copies.committed.front()) {
            for (unsigned i = 0; i < copy.floats; ++i) {
                copy.shared[i] = copy.valid ? copy.global[i] : 0.0f;
            }
        }
        copies.committed.erase(copies.committed.begin());
    }
}

static void wait_at(State barrier) {
    block->state[block->current] = barrier;
    switch_context(block->fibers[block->current], scheduler);
}

void sync_threads() { wait_at(State::AtBlockBarrier); }

void sync_warp() { wait_at(State::AtWarpBarrier); }

// Whether blocks run two at a time, interleaved (set with the block order, below).
static bool interleaved = false;

unsigned arrive(unsigned* counter) {
    unsigned before = (*counter)++;
    if (interleaved) {  // the thread stays ready; the scheduler may run another block first
        block->paused = true;
        switch_context(block->fibers[block->current], scheduler);
    }
    return before;
}

// A fiber's life: the kernel, then back to the scheduler for good.
static void run_fiber() {
    finish_switch(block->fibers[block->current]);
    launch_kernel(launch_args);
    block->state[block->current] = State::Done;
    switch_context(block->fibers[block->current], scheduler);
}

// What release_barriers did.
enum class Release {
    Some,    // released a warp or the block
    None,    // nothing: every live thread is done, or they wait at different barriers
    Exited,  // a barrier whose other threads are all there, but some have returned
};

// Whether every live thread of `first`..`end` waits at `barrier`, and whether any has returned:
// threads that return before a barrier the others then wait at is a hang or undefined
// behaviour on a GPU (__syncthreads() only in code the whole block reaches; a shuffle's mask
// names its lanes), so the emulator refuses it rather than count them as arrived.
struct Arrivals {
    bool waiting = false, all_arrived = true, some_returned = false;
};
static Arrivals arrivals(unsigned first, unsigned end, State barrier) {
    Arrivals at;
    for (unsigned t = first; t < end; ++t) {
        at.waiting = at.waiting || block->state[t] == barrier;
        at.some_returned = at.some_returned || block->state[t] == State::Done;
        at.all_arrived = at.all_arrived && (block->state[t] == barrier || block->state[t] == State::Done);
    }
    return at;
}

// Releases what can be released: a warp whose lanes all wait at a warp barrier, else the block
// if all its threads wait at __syncthreads().
static Release release_barriers() {
    bool released = false;
    auto release = [](unsigned first, unsigned end, State barrier) {
        for (unsigned t = first; t < end; ++t) {
            if (block->state[t] == barrier) block->state[t] = State::Ready;
        }
    };
    for (unsigned base = 0; base < block_threads; base += 32) {
        unsigned end = base + 32 < block_threads ? base + 32 : block_threads;
        Arrivals warp = arrivals(base, end, State::AtWarpBarrier);
        if (warp.waiting && warp.all_arrived) {
            if (warp.some_returned) return Release::Exited;
            release(base, end, State::AtWarpBarrier);
            count_shared_requests(base, end);
            released = true;
        }
    }
    if (released) {
        return Release::Some;
    }
    Arrivals all = arrivals(0, block_threads, State::AtBlockBarrier);
    if (all.waiting && all.all_arrived) {
        if (all.some_returned) return Release::Exited;
        release(0, block_threads, State::AtBlockBarrier);
        count_shared_requests(0, block_threads);
        return Release::Some;
    }
    return Release::None;
}

// The order threads run in between barriers: 0 for index order, 1 for reversed, else a seed
// for a fresh shuffle of each stretch between barriers. A GPU interleaves its warps as it
// pleases, so no result may depend on it: two threads that touch one shared word between the
// same two barriers, one of them writing, see it in different states in index and reversed
// order (every pair swaps), and the results differ — a missing barrier shows, whichever of
// the two threads comes first in index order. Set under the launch lock (below).
static unsigned thread_order_seed = 0;
static unsigned thread_shuffle_state = 0;  // xorshift32, restarted from the seed when it is set

static unsigned next_random(unsigned& state) {  // xorshift32
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

// Fills `order` with the block's thread ranks in the order the next stretch runs them.
static void thread_order(std::vector<unsigned>& order) {
    const unsigned n = (unsigned)order.size();
    for (unsigned t = 0; t < n; ++t) {
        order[t] = thread_order_seed == 1 ? n - 1 - t : t;
    }
    for (unsigned i = n; thread_order_seed > 1 && i > 1; --i) {
        std::swap(order[i - 1], order[next_random(thread_shuffle_state) % i]);
    }
}

// Starts block `index` in `b`: a fiber per thread at the kernel's start.
static void start_block(Block& b, dim3 index) {
    if (b.stacks.size() < block_threads) {
        b.fibers.resize(block_threads);
        b.state.resize(block_threads);
        while (b.stacks.size() < block_threads) {
            b.stacks.emplace_back(FIBER_STACK);
        }
    }
    b.index = index;
    b.order.resize(block_threads);
    // Copies a block never waited for die with it (their data was never to be read).
    b.async_copies.assign(block_threads, AsyncCopies{});
    b.trace.start(traced != nullptr ? block_threads : 0);
    for (unsigned t = 0; t < block_threads; ++t) {
        start_context(b.fibers[t], b.stacks[t], run_fiber);
        b.state[t] = State::Ready;
    }
    b.fresh = true;
    b.paused = false;
}

// What run_block returns besides a launch error (ferrograd_emu_launch).
static const int BLOCK_DONE = 0, BLOCK_PAUSED = -1;

// Runs the running block: its ready fibers in the thread order, each up to its next barrier,
// then the barriers that can be released, until every fiber has returned (BLOCK_DONE) or one
// pauses at an atomic (BLOCK_PAUSED). Returns the launch's error 2 for a barrier that can
// never be released (threads waiting at different barriers), 4 for one some threads had
// returned before.
static int run_block() {
    for (;;) {
        bool ran = false;
        thread_order(block->order);
        for (unsigned t : block->order) {
            if (block->state[t] != State::Ready) {
                continue;
            }
            ran = true;
            block->current = t;
            thread_idx = dim3{t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
            switch_context(scheduler, block->fibers[t]);
            if (block->paused) {
                block->paused = false;
                return BLOCK_PAUSED;
            }
        }
        if (ran) {
            continue;
        }
        switch (release_barriers()) {
            case Release::Some: break;
            case Release::Exited: return 4;
            case Release::None:
                for (unsigned t = 0; t < block_threads; ++t) {
                    if (block->state[t] != State::Done) return 2;
                }
                count_shared_requests(0, block_threads);
                return BLOCK_DONE;
        }
    }
}

}  // namespace ferrograd_emu

// The order blocks run in: 0 for the grid's order (x fastest), else a seed that shuffles it;
// interleaved, two blocks are live at a time and at each atomic arrival the seed's sequence
// picks which runs on (see ferrograd_emu::arrive). A GPU promises no order, and runs blocks
// at once, so no result may depend on it; tests shuffle and interleave to check.
static unsigned block_order_seed = 0;
static unsigned interleave_state = 0;  // xorshift32, restarted from the seed when it is set

// The grid's blocks in the order they start: grid order, or shuffled (Fisher–Yates, xorshift32
// from the seed) when a seed is set.
static std::vector<dim3> block_order(dim3 grid) {
    std::vector<dim3> blocks;
    for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
            for (unsigned x = 0; x < grid.x; ++x) {
                blocks.push_back(dim3{x, y, z});
            }
        }
    }
    unsigned state = block_order_seed;
    for (size_t i = blocks.size(); state != 0 && i > 1; --i) {
        std::swap(blocks[i - 1], blocks[ferrograd_emu::next_random(state) % i]);
    }
    return blocks;
}

// Launches are serialised: the launch state and __shared__ storage are process-wide.
static std::mutex one_launch_at_a_time;

// Sets the block order (above): a seed (0: the grid's order) and whether blocks interleave.
// Waits for a launch in progress.
extern "C" void ferrograd_emu_set_block_order(unsigned seed, int interleave) {
    std::lock_guard<std::mutex> guard(one_launch_at_a_time);
    block_order_seed = seed;
    interleave_state = seed;
    ferrograd_emu::interleaved = interleave != 0;
}

// The order threads run in between barriers (see thread_order): 0 index order, 1 reversed,
// else a seed for shuffles. Waits for a launch in progress.
extern "C" void ferrograd_emu_set_thread_order(unsigned seed) {
    std::lock_guard<std::mutex> guard(one_launch_at_a_time);
    ferrograd_emu::thread_order_seed = seed;
    ferrograd_emu::thread_shuffle_state = seed;
}

// Whether a GPU would launch `kernel` over `grid` × `block`: no dimension 0, at most
// 2^31 - 1 blocks along x and 65,535 along y and z, at most 1,024 threads along x and y and 64
// along z, and at most the kernel's __launch_bounds__ (or 1,024) threads a block.
static bool launchable(const ferrograd_emu::Kernel& kernel, dim3 grid, dim3 block) {
    const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 0x7fffffffu &&
           grid.y <= 65535 && grid.z <= 65535 && block.x >= 1 && block.y >= 1 && block.z >= 1 &&
           block.x <= 1024 && block.y <= 1024 && block.z <= 64 && threads <= kernel.max_threads;
}

// Runs `kernel` over `grid` × `block_shape` (see ferrograd_emu_launch), under the launch lock.
static int run_launch(const ferrograd_emu::Kernel& kernel, dim3 grid, dim3 block_shape,
                      void** args) {
    using namespace ferrograd_emu;
    if (!launchable(kernel, grid, block_shape)) {
        return 5;
    }
    // The blocks that can be live at once (a deque: their addresses stay put).
    static std::deque<Block> slots(2);
    block_threads = block_shape.x * block_shape.y * block_shape.z;
    launch_kernel = kernel.launch;
    shared_first = kernel.shared_first;
    shared_end = kernel.shared_end;
    launch_args = args;
    grid_dim = grid;
    block_dim = block_shape;
    misaligned = false;
    trapped = false;
    const std::vector<dim3> order = block_order(grid);
    size_t started = 0;
    std::vector<Block*> live;
    for (size_t s = 0; s < (interleaved ? slots.size() : 1) && started < order.size(); ++s) {
        start_block(slots[s], order[started++]);
        live.push_back(&slots[s]);
    }
    size_t next = 0;  // the live block to run next
    while (!live.empty()) {
        Block& b = *live[next];
        switch_to(b);
        const int outcome = run_block();
        if (outcome > 0) {
            return outcome;
        }
        if (trapped) {
            return 7;
        }
        if (outcome == BLOCK_DONE) {
            if (started < order.size()) {
                start_block(b, order[started++]);
            } else {
                live.erase(live.begin() + (long)next);
            }
        }
        next = interleaved && !live.empty() ? next_random(interleave_state) % live.size() : 0;
    }
    return misaligned ? 3 : 0;
}

// Runs kernel `name` over `grid` × `block_shape`. Returns 0; 1 if no kernel has that name; 2 if
// its threads deadlocked at barriers; 3 if it made a misaligned 16-byte copy; 4 if threads
// waited at a barrier that some of the threads it concerns had returned before reaching; 5 if
// a GPU would refuse the launch's geometry (launchable), without running anything; 7 if a
// thread called __trap().
extern "C" int ferrograd_emu_launch(const char* name, dim3 grid, dim3 block_shape, void** args) {
    using namespace ferrograd_emu;
    std::lock_guard<std::mutex> guard(one_launch_at_a_time);
    auto kernel = find_kernel(name);
    return kernel == registry().end() ? 1 : run_launch(kernel->second, grid, block_shape, args);
}

// Whether this build has the instrumented kernels ferrograd_emu_launch_traced runs (not under
// AddressSanitizer, whose instrumentation and ThreadSanitizer's exclude each other: build.rs).
extern "C" int ferrograd_emu_can_trace_shared_memory() {
    using namespace ferrograd_emu;
    return traced_kernels_registered;
}

// As ferrograd_emu_launch, running the default kernel of that name compiled to trace its
// shared-memory accesses (shared_trace.cpp), whose bank traffic it adds to *traffic. Returns
// 8, running nothing, if there is no such kernel: a name with a variant, a sweep variant
// chosen (ferrograd_emu_set_kernel_defines), or a build without traced kernels.
extern "C" int ferrograd_emu_launch_traced(const char* name, dim3 grid, dim3 block_shape,
                                           void** args, ferrograd_emu::SharedTraffic* traffic) {
    using namespace ferrograd_emu;
    std::lock_guard<std::mutex> guard(one_launch_at_a_time);
    const std::string named = name;
    auto kernel = registry().find(named + "|" + TRACE_SHARED_MEMORY_VARIANT);
    if (named.find('|') != std::string::npos || current_variant.load() >= 0 ||
        kernel == registry().end()) {
        return 8;
    }
    traced = traffic;
    const int status = run_launch(kernel->second, grid, block_shape, args);
    traced = nullptr;
    shared_trace = nullptr;
    return status;
}

// Later launches run the kernels compiled with `defines` (a line of kernels/sweep.txt, as
// build.rs normalised it: definitions one space apart), or the defaults for "". Returns 0; 1
// if no variant was compiled with those definitions (nothing changes then).
extern "C" int ferrograd_emu_set_kernel_defines(const char* defines) {
    using namespace ferrograd_emu;
    if (*defines == '\0') {
        current_variant.store(-1);
        return 0;
    }
    auto found = std::find(variants().begin(), variants().end(), defines);
    if (found == variants().end()) {
        return 1;
    }
    current_variant.store((int)(found - variants().begin()));
    return 0;
}
