// Adam (src/optim/adam.rs), fused over the parameters of a model: one launch per step for up to
// 16 parameters (one per 16 beyond). The step count and its bias corrections live in device
// memory (`scalars`), so a step needs nothing from the host and can be captured in a CUDA graph.
//   t ← t + 1;  step_size = lr / (1 − β₁ᵗ);  c₂ = √(1 − β₂ᵗ)
//   g ← g + λθ;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²
//   θ ← θ − step_size · m / (√v / c₂ + ε)
// m and v are stored with subnormal values flushed to 0, as the CPU's Adam does (see
// src/optim/adam.rs: on x86 they are slow, and flushing them leaves the updates as they were).

// scalars[0] = t, the steps taken, held as an unsigned integer in the float's bits (a float
// counts whole numbers exactly only up to 2^24, 16.7 M steps); scalars[1] = step_size,
// scalars[2] = c₂ (as of the latest step); and scalars[3], whose bits count the blocks of a
// step that are done (0 between steps).
#define ADAM_SCALARS 4

// Parameters per launch. The address table travels in the kernel's arguments (as PyTorch's
// multi_tensor_apply does): nothing to copy from the host, so a step can be captured.
#define ADAM_MAX_TENSORS 16

struct AdamStepArgs {
    u64 tensors[4 * ADAM_MAX_TENSORS];  // per parameter: its own, its gradient's, m's, v's address
    // count + 1 prefix sums of the parameters' quads (⌈length / 4⌉): quad i of the launch is
    // quad i − offsets[p] of parameter p, offsets[p] <= i < offsets[p + 1].
    u64 offsets[ADAM_MAX_TENSORS + 1];
    u64 lengths[ADAM_MAX_TENSORS];      // the parameters' lengths
    float* scalars;
    u32 count;
    u32 advance;  // 1 in the step's last launch: it moves the step count on
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
};

// x, or 0 if x is subnormal (nonzero and below FLT_MIN): flush-to-zero for one value.
__device__ __forceinline__ float flush_subnormal(float x) {
    return fabsf(x) < 1.17549435e-38f ? 0.0f : x;
}

// The step count after one more step: t + 1, held at 2^32 − 1 (4.3 billion steps, where β^t
// is long 0) instead of wrapping to 0.
__device__ __forceinline__ u32 next_step(u32 t) { return t == 0xFFFFFFFFu ? t : t + 1u; }

// One element's update (the formulas above), in place.
__device__ __forceinline__ void adam_update(const AdamStepArgs& args, float step_size,
                                            float bias_correction2_sqrt, float& param,
                                            float grad, float& exp_avg, float& exp_avg_sq) {
    float g = grad + args.weight_decay * param;
    float m = flush_subnormal(args.beta1 * exp_avg + (1.0f - args.beta1) * g);
    float v = flush_subnormal(args.beta2 * exp_avg_sq + (1.0f - args.beta2) * g * g);
    exp_avg = m;
    exp_avg_sq = v;
    param -= step_size * m / (sqrtf(v) / bias_correction2_sqrt + args.eps);
}

// Every block derives this step's scalars from t + 1, t as the step found it: until the last
// block of the step's last launch is done, nobody writes t. That block (the last to count
// itself in, as in gemm.cu's split-K) stores t + 1 and the scalars, and resets the count.
FG_KERNEL(adam_step, AdamStepArgs) {
    __shared__ float step_size, bias_correction2_sqrt;
    if (threadIdx.x == 0) {
        const u32 t = next_step(*(const u32*)&args.scalars[0]);
        // In double, as PyTorch computes them on the host.
        double bias_correction1 = 1.0 - pow((double)args.beta1, (double)t);
        double bias_correction2 = 1.0 - pow((double)args.beta2, (double)t);
        step_size = (float)((double)args.lr / bias_correction1);
        bias_correction2_sqrt = (float)sqrt(bias_correction2);
    }
    __syncthreads();
    // A thread updates a quad of one parameter: 16-byte loads and stores of θ, g, m and v
    // where the quad is whole and the buffers 16-byte aligned (allocations are 256-byte
    // aligned), else one element at a time (a parameter's ragged end).
    const u64 quads = args.offsets[args.count];
    for (u64 i = global_thread(); i < quads; i += grid_stride()) {
        u32 low = 0, high = args.count;  // the parameter holding quad i
        while (high - low > 1) {
            u32 mid = (low + high) / 2;
            if (args.offsets[mid] <= i) {
                low = mid;
            } else {
                high = mid;
            }
        }
        const u64 first = 4 * (i - args.offsets[low]), length = args.lengths[low];
        float* param = (float*)args.tensors[4 * low] + first;
        const float* grad = (const float*)args.tensors[4 * low + 1] + first;
        float* exp_avg = (float*)args.tensors[4 * low + 2] + first;
        float* exp_avg_sq = (float*)args.tensors[4 * low + 3] + first;
        const u64 addresses = (u64)param | (u64)grad | (u64)exp_avg | (u64)exp_avg_sq;
        if (first + 4 <= length && addresses % 16 == 0) {
            float4 p4 = *(float4*)param, m4 = *(float4*)exp_avg, v4 = *(float4*)exp_avg_sq;
            const float4 g4 = *(const float4*)grad;
            adam_update(args, step_size, bias_correction2_sqrt, p4.x, g4.x, m4.x, v4.x);
            adam_update(args, step_size, bias_correction2_sqrt, p4.y, g4.y, m4.y, v4.y);
            adam_update(args, step_size, bias_correction2_sqrt, p4.z, g4.z, m4.z, v4.z);
            adam_update(args, step_size, bias_correction2_sqrt, p4.w, g4.w, m4.w, v4.w);
            *(float4*)param = p4;
            *(float4*)exp_avg = m4;
            *(float4*)exp_avg_sq = v4;
        } else {
            for (u64 e = 0; e < 4 && first + e < length; ++e) {
                adam_update(args, step_size, bias_correction2_sqrt, param[e], grad[e],
                            exp_avg[e], exp_avg_sq[e]);
            }
        }
    }
    if (args.advance && threadIdx.x == 0) {
        u32* done = (u32*)&args.scalars[3];
        // Release: this block's read of t (thread 0's, above) comes before its count.
        if (arrive_acq_rel(done) == gridDim.x - 1) {
            u32* steps = (u32*)&args.scalars[0];
            *steps = next_step(*steps);
            args.scalars[1] = step_size;
            args.scalars[2] = bias_correction2_sqrt;
            *done = 0u;
        }
    }
}
