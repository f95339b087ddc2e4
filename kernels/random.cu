// Random fills from Philox4x32-10, with exactly the mapping of src/rng.rs and
// backend::Distribution::sample_block: value i of a draw is lane i % 4 of counter block
// first_block + i / 4, key = the seed. One seed gives the same numbers on every device.

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#define DIST_UNIFORM 0
#define DIST_NORMAL 1
#define DIST_DROPOUT_MASK 2

struct RandomArgs {
    float* out;
    u64 n;
    u64 first_block;
    // Null, or a generator's state in device memory: {offset, key}. A captured graph's draws
    // read it, first_block relative to its offset, so that each replay continues the stream
    // (see philox_advance) of whatever generator the host put there.
    const u64* generator;
    u32 key0;
    u32 key1;
    int distribution;
    float a;  // uniform: low;  normal: mean;  dropout: p
    float b;  // uniform: high; normal: std
};

__device__ __forceinline__ u32 mul_hi(u32 a, u32 b) {
    return (u32)(((u64)a * b) >> 32);
}

__device__ void philox4x32_10(u32 c[4], u32 k0, u32 k1) {
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

// One thread per counter block: four values.
FG_KERNEL(random_fill, RandomArgs) {
    u64 blocks = (args.n + 3) / 4;
    u64 first_block = args.first_block;
    u32 key0 = args.key0, key1 = args.key1;
    if (args.generator) {
        first_block += args.generator[0];
        key0 = (u32)args.generator[1];
        key1 = (u32)(args.generator[1] >> 32);
    }
    for (u64 block = global_thread(); block < blocks; block += grid_stride()) {
        u64 counter = first_block + block;
        u32 w[4] = {(u32)counter, (u32)(counter >> 32), 0u, 0u};
        philox4x32_10(w, key0, key1);
        float v[4];
        if (args.distribution == DIST_UNIFORM) {
            for (int i = 0; i < 4; ++i) v[i] = args.a + (args.b - args.a) * unit(w[i]);
        } else if (args.distribution == DIST_NORMAL) {
            for (int pair = 0; pair < 2; ++pair) {
                float radius = sqrtf(-2.0f * logf(unit_nonzero(w[2 * pair])));
                float angle = 6.28318530717958647692f * unit(w[2 * pair + 1]);
                v[2 * pair] = args.a + args.b * (radius * cosf(angle));
                v[2 * pair + 1] = args.a + args.b * (radius * sinf(angle));
            }
        } else {
            float keep_scale = args.a < 1.0f ? 1.0f / (1.0f - args.a) : 0.0f;
            for (int i = 0; i < 4; ++i) v[i] = unit(w[i]) >= args.a ? keep_scale : 0.0f;
        }
        for (int i = 0; i < 4 && 4 * block + i < args.n; ++i) {
            args.out[4 * block + i] = v[i];
        }
    }
}

struct PhiloxAdvanceArgs {
    u64* generator;  // {offset, key}, as in RandomArgs
    u64 blocks;
};

// The last launch of a captured graph that draws random numbers: the next replay starts where
// this one stopped, as the next eager step would.
FG_KERNEL(philox_advance, PhiloxAdvanceArgs) {
    if (global_thread() == 0) {
        args.generator[0] += args.blocks;
    }
}
