// sizeof of every kernel argument struct, so a test can hold the Rust mirrors in
// src/backend/cuda/args.rs to the C layout. Part of the emulator's translation unit.
#include <cstring>

extern "C" size_t ferrograd_emu_args_size(const char* name) {
#define FERROGRAD_ARGS(T) \
    if (std::strcmp(name, #T) == 0) return sizeof(T);
    FERROGRAD_ARGS(UnaryArgs)
    FERROGRAD_ARGS(BinaryArgs)
    FERROGRAD_ARGS(TernaryArgs)
    FERROGRAD_ARGS(ConcatArgs)
    FERROGRAD_ARGS(SumArgs)
    FERROGRAD_ARGS(SumRowsArgs)
    FERROGRAD_ARGS(GemmArgs)
    FERROGRAD_ARGS(GemmPairArgs)
    FERROGRAD_ARGS(GemmStepArgs)
    FERROGRAD_ARGS(PhiloxDraw)
    FERROGRAD_ARGS(RandomArgs)
    FERROGRAD_ARGS(PhiloxAdvanceArgs)
    FERROGRAD_ARGS(AdamStepArgs)
#undef FERROGRAD_ARGS
    return 0;
}
