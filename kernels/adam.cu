// Adam's update (src/optim/adam.rs), fused: one pass reads θ, g, m, v and writes θ, m, v.
//   g ← g + λθ;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²
//   θ ← θ − step_size · m / (√v / √(1 − β₂ᵗ) + ε),  step_size = lr / (1 − β₁ᵗ)

struct AdamArgs {
    float* param;
    const float* grad;
    float* exp_avg;
    float* exp_avg_sq;
    u64 n;
    float beta1;
    float beta2;
    float eps;
    float weight_decay;
    float step_size;
    float bias_correction2_sqrt;
};

FG_KERNEL(adam_update, AdamArgs) {
    for (u64 i = global_thread(); i < args.n; i += grid_stride()) {
        float g = args.grad[i] + args.weight_decay * args.param[i];
        float m = args.beta1 * args.exp_avg[i] + (1.0f - args.beta1) * g;
        float v = args.beta2 * args.exp_avg_sq[i] + (1.0f - args.beta2) * g * g;
        args.exp_avg[i] = m;
        args.exp_avg_sq[i] = v;
        args.param[i] -= args.step_size * m / (sqrtf(v) / args.bias_correction2_sqrt + args.eps);
    }
}
