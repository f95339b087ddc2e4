// Adam (src/optim/adam.rs), fused over the parameters of a model: one launch per step for up to
// 16 parameters (one per 16 beyond). The step count and its bias corrections live in device
// memory (`scalars`), so a step needs nothing from the host and can be captured in a CUDA graph.
//   t ← t + 1;  step_size = lr / (1 − β₁ᵗ);  c₂ = √(1 − β₂ᵗ)
//   g ← g + λθ;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²
//   θ ← θ − step_size · m / (√v / c₂ + ε)

// scalars[0] = t, scalars[1] = step_size, scalars[2] = c₂ (as of the latest step), and
// scalars[3], whose bits count the blocks of a step that are done (0 between steps).
#define ADAM_SCALARS 4

// Parameters per launch. The address table travels in the kernel's arguments (as PyTorch's
// multi_tensor_apply does): nothing to copy from the host, so a step can be captured.
#define ADAM_MAX_TENSORS 16

struct AdamStepArgs {
    u64 tensors[4 * ADAM_MAX_TENSORS];  // per parameter: its own, its gradient's, m's, v's address
    u64 offsets[ADAM_MAX_TENSORS + 1];  // count + 1 prefix sums of the parameters' lengths
    float* scalars;
    u32 count;
    u32 advance;  // 1 in the step's last launch: it moves the step count on
    float lr;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
};

// Every block derives this step's scalars from t + 1, t as the step found it: until the last
// block of the step's last launch is done, nobody writes t. That block (the last to count
// itself in, as in gemm.cu's split-K) stores t + 1 and the scalars, and resets the count.
FG_KERNEL(adam_step, AdamStepArgs) {
    __shared__ float step_size, bias_correction2_sqrt;
    if (threadIdx.x == 0) {
        float t = args.scalars[0] + 1.0f;
        // In double, as PyTorch computes them on the host.
        double bias_correction1 = 1.0 - pow((double)args.beta1, (double)t);
        double bias_correction2 = 1.0 - pow((double)args.beta2, (double)t);
        step_size = (float)((double)args.lr / bias_correction1);
        bias_correction2_sqrt = (float)sqrt(bias_correction2);
    }
    __syncthreads();
    const u64 total = args.offsets[args.count];
    for (u64 i = global_thread(); i < total; i += grid_stride()) {
        // The parameter holding element i: offsets[p] <= i < offsets[p + 1].
        u32 low = 0, high = args.count;
        while (high - low > 1) {
            u32 mid = (low + high) / 2;
            if (args.offsets[mid] <= i) {
                low = mid;
            } else {
                high = mid;
            }
        }
        u64 j = i - args.offsets[low];
        float* param = (float*)args.tensors[4 * low];
        const float* grad = (const float*)args.tensors[4 * low + 1];
        float* exp_avg = (float*)args.tensors[4 * low + 2];
        float* exp_avg_sq = (float*)args.tensors[4 * low + 3];
        float g = grad[j] + args.weight_decay * param[j];
        float m = args.beta1 * exp_avg[j] + (1.0f - args.beta1) * g;
        float v = args.beta2 * exp_avg_sq[j] + (1.0f - args.beta2) * g * g;
        exp_avg[j] = m;
        exp_avg_sq[j] = v;
        param[j] -= step_size * m / (sqrtf(v) / bias_correction2_sqrt + args.eps);
    }
    if (args.advance && threadIdx.x == 0) {
        u32* done = (u32*)&args.scalars[3];
        // Release: this block's read of t (thread 0's, above) comes before its count.
        if (arrive_acq_rel(done) == gridDim.x - 1) {
            args.scalars[0] += 1.0f;
            args.scalars[1] = step_size;
            args.scalars[2] = bias_correction2_sqrt;
            *done = 0u;
        }
    }
}
