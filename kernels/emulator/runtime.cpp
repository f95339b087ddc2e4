// The emulator's launch loop (see emulator.h). build.rs compiles it in one translation unit
// with every kernel file, so the kernels' registrars are linked in with it.

#include <ucontext.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace ferrograd_emu {

dim3 thread_idx;
dim3 block_idx;
dim3 block_dim;
dim3 grid_dim;

static std::map<std::string, Launcher>& registry() {
    static std::map<std::string, Launcher> kernels;
    return kernels;
}

Registrar::Registrar(const char* name, Launcher launcher) { registry()[name] = launcher; }

// Bytes of stack per CUDA thread: our kernels keep a few dozen floats in "registers".
static const size_t FIBER_STACK = 128 * 1024;

// The launch in progress: the scheduler's context and one fiber per thread of the block.
struct Block {
    ucontext_t scheduler;
    std::vector<ucontext_t> fibers;
    std::vector<std::vector<char>> stacks;
    std::vector<bool> done;
    unsigned current = 0;
    Launcher launch = nullptr;
    void** args = nullptr;
};

static Block block;

// Hands over from the current fiber to the scheduler, which runs the next one.
void sync_threads() { swapcontext(&block.fibers[block.current], &block.scheduler); }

static void run_fiber() {
    block.launch(block.args);
    block.done[block.current] = true;  // returning resumes the scheduler (uc_link)
}

// Runs one block: every fiber in index order up to its next barrier, round after round,
// until all have returned.
static void run_block(unsigned threads) {
    for (unsigned t = 0; t < threads; ++t) {
        ucontext_t& fiber = block.fibers[t];
        getcontext(&fiber);
        fiber.uc_stack.ss_sp = block.stacks[t].data();
        fiber.uc_stack.ss_size = FIBER_STACK;
        fiber.uc_link = &block.scheduler;
        makecontext(&fiber, run_fiber, 0);
        block.done[t] = false;
    }
    for (bool running = true; running;) {
        running = false;
        for (unsigned t = 0; t < threads; ++t) {
            if (block.done[t]) {
                continue;
            }
            block.current = t;
            thread_idx = dim3{t % block_dim.x, (t / block_dim.x) % block_dim.y, t / (block_dim.x * block_dim.y)};
            swapcontext(&block.scheduler, &block.fibers[t]);
            running = running || !block.done[t];
        }
    }
}

}  // namespace ferrograd_emu

// Runs kernel `name` over `grid` × `block_shape`. Returns 0, or 1 if no kernel has that name.
// Launches are serialised: the launch state and __shared__ storage are process-wide.
extern "C" int ferrograd_emu_launch(const char* name, dim3 grid, dim3 block_shape, void** args) {
    using namespace ferrograd_emu;
    static std::mutex one_launch_at_a_time;
    std::lock_guard<std::mutex> guard(one_launch_at_a_time);
    auto kernel = registry().find(name);
    if (kernel == registry().end()) {
        return 1;
    }
    unsigned threads = block_shape.x * block_shape.y * block_shape.z;
    if (block.stacks.size() < threads) {
        block.fibers.resize(threads);
        block.done.resize(threads);
        while (block.stacks.size() < threads) {
            block.stacks.emplace_back(FIBER_STACK);
        }
    }
    block.launch = kernel->second;
    block.args = args;
    grid_dim = grid;
    block_dim = block_shape;
    for (unsigned z = 0; z < grid.z; ++z) {
        for (unsigned y = 0; y < grid.y; ++y) {
            for (unsigned x = 0; x < grid.x; ++x) {
                block_idx = dim3{x, y, z};
                run_block(threads);
            }
        }
    }
    return 0;
}
