// Shared-memory bank conflicts, counted as a GPU meets them (ncu's "shared wavefronts"), from
// the kernels' own loads and stores. Part of the emulator's translation unit.
//
// Shared memory is 32 banks, each 4 bytes wide: word w (byte offset / 4) is in bank w % 32, and
// a bank serves one word a cycle. A warp's load or store is one request; the hardware splits
// it into wavefronts, passes through the banks:
// - 4-byte (or narrower) accesses: the 32 lanes together, as many wavefronts as the busiest
//   bank has distinct words asked of it (lanes asking for the same word share it: a
//   broadcast). 32 lanes reading 32 consecutive floats take 1; a column of a 32 × 32 float
//   tile, every lane in one bank, takes 32.
// - 8-byte accesses go half a warp at a time (16 lanes × 8 bytes = the banks' 128 bytes), and
//   16-byte ones (float4) a quarter at a time: 2 and 4 wavefronts at best, each phase counted
//   as above.
// `ideal_wavefronts` is that best (one per phase that has lanes in it); wavefronts beyond it
// are bank conflicts. (The hardware can merge phases whose lanes share addresses; this counts
// them apart, as ncu's ideal count does.)
//
// How the accesses are seen: build.rs compiles the kernels once more with GCC's
// ThreadSanitizer instrumentation, which calls __tsan_read4(address) before every 4-byte load
// and so on — but instead of ThreadSanitizer's runtime, the hooks at the end of this file are
// linked, and they record each access to the __shared__ section (emulator.h) with the thread
// and the code address it came from. Those kernels are registered under
// TRACE_SHARED_MEMORY_VARIANT; ferrograd_emu_launch_traced (runtime.cpp) runs them. When a
// warp's lanes meet at a barrier, their accesses since the last one are lined up — the n-th
// access of each lane from one place in the code is one request, as the lanes of a warp run
// one instruction together — and counted.

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

// TRACE_SHARED_MEMORY_VARIANT, the variant the instrumented kernels are registered under, is
// build.rs's (TRACE_SHARED_MEMORY), defined at the top of this unit and theirs.
#ifndef TRACE_SHARED_MEMORY_VARIANT
#error "build.rs defines TRACE_SHARED_MEMORY_VARIANT"
#endif

namespace ferrograd_emu {

// Requests of a warp and the wavefronts they took (above).
struct BankTraffic {
    uint64_t requests;
    uint64_t wavefronts;
    uint64_t ideal_wavefronts;
};

enum class AccessKind : uint8_t { Load, Store, Copy };

// A launch's traffic; mirrored by SharedMemoryTraffic in src/backend/cuda/emulator.rs.
struct SharedTraffic {
    BankTraffic loads;
    BankTraffic stores;
    BankTraffic copies;  // cp.async's writes (copy_async in runtime.cpp)

    BankTraffic& of(AccessKind kind) {
        return kind == AccessKind::Load ? loads : kind == AccessKind::Store ? stores : copies;
    }
};

// The wavefronts of one request: `count` lanes (lane[i] its index in the warp, 0–31) each
// accessing `bytes` bytes at byte offset offset[i] of shared memory. Adds them, and the ideal,
// to `traffic`.
inline void count_request(const unsigned* lane, const uint32_t* offset, unsigned count,
                          unsigned bytes, BankTraffic& traffic) {
    const unsigned lanes_per_phase = bytes <= 4 ? 32 : 128 / bytes;
    traffic.requests += 1;
    for (unsigned phase = 0; phase < 32 / lanes_per_phase; ++phase) {
        uint32_t words[32 * 4];  // of the phase's lanes: 32 words of 4 bytes at most
        unsigned n = 0;
        for (unsigned i = 0; i < count; ++i) {
            if (lane[i] / lanes_per_phase != phase) continue;
            for (uint32_t word = offset[i] / 4; word <= (offset[i] + bytes - 1) / 4; ++word) {
                words[n++] = word;
            }
        }
        if (n == 0) continue;
        std::sort(words, words + n);
        n = (unsigned)(std::unique(words, words + n) - words);
        unsigned per_bank[32] = {};
        unsigned busiest = 0;
        for (unsigned w = 0; w < n; ++w) {
            busiest = std::max(busiest, ++per_bank[words[w] % 32]);
        }
        traffic.wavefronts += busiest;
        traffic.ideal_wavefronts += 1;
    }
}

// One access of a thread: where in the code, where in shared memory, how wide, which kind.
struct SharedAccess {
    const void* site;
    uint32_t offset;
    uint16_t bytes;
    AccessKind kind;
};

// The accesses each thread of a block made since its warp last met at a barrier.
class SharedTrace {
  public:
    void start(unsigned threads) {
        accesses_.resize(threads);
        for (auto& thread : accesses_) thread.clear();
    }

    void record(unsigned thread, SharedAccess access) { accesses_[thread].push_back(access); }

    // Counts the requests of the warp of threads first..end (at a barrier together) into
    // `traffic`, and forgets them.
    void count_warp(unsigned first, unsigned end, SharedTraffic& traffic) {
        end = std::min(end, (unsigned)accesses_.size());
        if (first >= end) return;
        if (uniform(first, end)) {  // the n-th access of every lane is one request
            unsigned lanes[32];
            uint32_t offsets[32];
            for (size_t n = 0; n < accesses_[first].size(); ++n) {
                const SharedAccess& access = accesses_[first][n];
                for (unsigned t = first; t < end; ++t) {
                    lanes[t - first] = t - first;
                    offsets[t - first] = accesses_[t][n].offset;
                }
                count_request(lanes, offsets, end - first, access.bytes,
                              traffic.of(access.kind));
            }
        } else {
            count_diverged(first, end, traffic);
        }
        for (unsigned t = first; t < end; ++t) accesses_[t].clear();
    }

  private:
    // Whether the lanes first..end made the same accesses (site, width, kind) in the same
    // order: a warp that ran its code as one, the usual case.
    bool uniform(unsigned first, unsigned end) const {
        const std::vector<SharedAccess>& model = accesses_[first];
        for (unsigned t = first + 1; t < end; ++t) {
            const std::vector<SharedAccess>& lane = accesses_[t];
            if (lane.size() != model.size()) return false;
            for (size_t n = 0; n < model.size(); ++n) {
                if (lane[n].site != model[n].site || lane[n].bytes != model[n].bytes ||
                    lane[n].kind != model[n].kind) {
                    return false;
                }
            }
        }
        return true;
    }

    // count_warp where the lanes went different ways: the n-th access of each lane from one
    // site is one request, of the lanes that made it.
    void count_diverged(unsigned first, unsigned end, SharedTraffic& traffic) {
        // (site, occurrence) → the request: the lanes and their offsets, in lane order.
        struct Request {
            uint16_t bytes;
            AccessKind kind;
            std::vector<unsigned> lanes;
            std::vector<uint32_t> offsets;
        };
        std::map<std::pair<const void*, unsigned>, Request> requests;
        std::map<const void*, unsigned> seen;  // of the lane being read: accesses per site
        for (unsigned t = first; t < end; ++t) {
            seen.clear();
            for (const SharedAccess& access : accesses_[t]) {
                Request& request = requests[{access.site, seen[access.site]++}];
                request.bytes = access.bytes;
                request.kind = access.kind;
                request.lanes.push_back(t - first);
                request.offsets.push_back(access.offset);
            }
        }
        for (const auto& entry : requests) {
            const Request& r = entry.second;
            count_request(r.lanes.data(), r.offsets.data(), (unsigned)r.lanes.size(), r.bytes,
                          traffic.of(r.kind));
        }
    }

    std::vector<std::vector<SharedAccess>> accesses_;
};

// Where the hooks record: the running block's trace, while a traced launch runs (runtime.cpp
// sets it), else null.
static SharedTrace* shared_trace = nullptr;

// The __shared__ section of the launch in progress, its kernel's unit's (emulator.h; set by
// runtime.cpp's run_launch): in a traced launch, the traced kernels' section, whose accesses
// the hooks record.
static char* shared_first = nullptr;
static char* shared_end = nullptr;

unsigned thread_rank();

// An access: recorded if it is to shared memory and a traced launch runs.
static inline void trace_access(const void* address, unsigned bytes, AccessKind kind,
                                const void* site) {
    const char* byte = static_cast<const char*>(address);
    if (shared_trace == nullptr || byte < shared_first || byte >= shared_end) {
        return;
    }
    const uint32_t offset = (uint32_t)(byte - shared_first);
    shared_trace->record(thread_rank(), SharedAccess{site, offset, (uint16_t)bytes, kind});
}

}  // namespace ferrograd_emu

// The ThreadSanitizer entry points the instrumentation calls (-fsanitize=thread), for the
// traced kernels only: loads and stores are traced, the rest does nothing. The site is the
// hook's return address, one per load or store instruction of the compiled kernel. Those GCC
// 12 and clang 14 call (the kernels have no atomics and no virtual functions), and the memory
// functions some versions call instead of memcpy, memmove and memset.
namespace {
using ferrograd_emu::AccessKind;

// A block copy: one 4-byte access per word, at one site.
void trace_range(const void* a, size_t bytes, AccessKind kind, const void* site) {
    for (size_t word = 0; word < bytes; word += 4) {
        ferrograd_emu::trace_access(static_cast<const char*>(a) + word, 4, kind, site);
    }
}
}  // namespace

extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
#define FG_TSAN_HOOK(NAME, BYTES, KIND)                                   \
    void NAME(void* a) {                                                  \
        const void* site = __builtin_return_address(0);                   \
        ferrograd_emu::trace_access(a, BYTES, AccessKind::KIND, site);    \
    }
#define FG_TSAN_HOOKS(BYTES)                                         \
    FG_TSAN_HOOK(__tsan_read##BYTES, BYTES, Load)                    \
    FG_TSAN_HOOK(__tsan_write##BYTES, BYTES, Store)                  \
    FG_TSAN_HOOK(__tsan_unaligned_read##BYTES, BYTES, Load)          \
    FG_TSAN_HOOK(__tsan_unaligned_write##BYTES, BYTES, Store)        \
    FG_TSAN_HOOK(__tsan_volatile_read##BYTES, BYTES, Load)           \
    FG_TSAN_HOOK(__tsan_volatile_write##BYTES, BYTES, Store)
FG_TSAN_HOOKS(1)
FG_TSAN_HOOKS(2)
FG_TSAN_HOOKS(4)
FG_TSAN_HOOKS(8)
FG_TSAN_HOOKS(16)
#undef FG_TSAN_HOOKS
#undef FG_TSAN_HOOK
void __tsan_read_range(void* a, size_t bytes) {
    trace_range(a, bytes, AccessKind::Load, __builtin_return_address(0));
}
void __tsan_write_range(void* a, size_t bytes) {
    trace_range(a, bytes, AccessKind::Store, __builtin_return_address(0));
}
void* __tsan_memcpy(void* to, const void* from, size_t bytes) {
    trace_range(from, bytes, AccessKind::Load, __builtin_return_address(0));
    trace_range(to, bytes, AccessKind::Store, __builtin_return_address(0));
    return memcpy(to, from, bytes);
}
void* __tsan_memmove(void* to, const void* from, size_t bytes) {
    trace_range(from, bytes, AccessKind::Load, __builtin_return_address(0));
    trace_range(to, bytes, AccessKind::Store, __builtin_return_address(0));
    return memmove(to, from, bytes);
}
void* __tsan_memset(void* to, int value, size_t bytes) {
    trace_range(to, bytes, AccessKind::Store, __builtin_return_address(0));
    return memset(to, value, bytes);
}
}
