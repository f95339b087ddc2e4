// Random fills from Philox4x32-10 (common.cuh), with exactly the mapping of src/rng.rs and
// backend::Distribution::sample_block: one seed gives the same numbers on every device.

#define DIST_UNIFORM 0
#define DIST_NORMAL 1
#define DIST_DROPOUT_MASK 2

struct RandomArgs {
    float* out;
    u64 n;
    PhiloxDraw draw;
    int distribution;
    float a;  // uniform: low;  normal: mean;  dropout: p
    float b;  // uniform: high; normal: std
};

// One thread per counter block: four values.
FG_KERNEL(random_fill, RandomArgs) {
    u64 blocks = (args.n + 3) / 4;
    const PhiloxDraw draw = philox_resolve(args.draw);
    for (u64 block = global_thread(); block < blocks; block += grid_stride()) {
        u32 w[4];
        philox_block(draw, block, w);
        float v[4];
        if (args.distribution == DIST_UNIFORM) {
            // Rounded product, then rounded sum, as on the CPU: NVRTC would otherwise fuse them
            // into one FMA (one rounding) and the last bit could differ from the CPU's.
            for (int i = 0; i < 4; ++i) v[i] = __fadd_rn(args.a, __fmul_rn(args.b - args.a, unit(w[i])));
        } else if (args.distribution == DIST_NORMAL) {
            for (int pair = 0; pair < 2; ++pair) {
                float radius = sqrtf(-2.0f * logf(unit_nonzero(w[2 * pair])));
                float angle = 6.28318530717958647692f * unit(w[2 * pair + 1]);
                v[2 * pair] = args.a + args.b * (radius * cosf(angle));
                v[2 * pair + 1] = args.a + args.b * (radius * sinf(angle));
            }
        } else {
            for (int i = 0; i < 4; ++i) v[i] = dropout_mask_value(w[i], args.a);
        }
#pragma unroll  // v[i] with i known at compile time: v stays in registers
        for (int i = 0; i < 4; ++i) {
            if (4 * block + i < args.n) {
                args.out[4 * block + i] = v[i];
            }
        }
    }
}

struct PhiloxAdvanceArgs {
    u64* generator;  // {offset, key}, as PhiloxDraw::generator
    u64 blocks;
};

// The last launch of a captured graph that draws random numbers: the next replay starts where
// this one stopped, as the next eager step would.
FG_KERNEL(philox_advance, PhiloxAdvanceArgs) {
    if (global_thread() == 0) {
        args.generator[0] += args.blocks;
    }
}
