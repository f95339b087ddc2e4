// Elementwise kernels: every op's forward map and backward rule. Each mirrors the Rust kernel
// of the same name in src/ops/<op>.rs (launched as unary_<NAME>, binary_<NAME> or
// ternary_<NAME>), formula for formula. Backward rules are binary maps f(saved, grad) (the
// activations' formulas in common.cuh, which the GEMM's left-operand rules share), or ternary
// ones where a rule reads two saved values: f(saved₁, saved₂, grad).

// --- arithmetic (src/ops/arith.rs) ---
FG_KERNEL(binary_add, BinaryArgs) { map_binary(args, [](float a, float b, float) { return a + b; }); }
FG_KERNEL(binary_sub, BinaryArgs) { map_binary(args, [](float a, float b, float) { return a - b; }); }
FG_KERNEL(binary_mul, BinaryArgs) { map_binary(args, [](float a, float b, float) { return a * b; }); }
FG_KERNEL(unary_add_scalar, UnaryArgs) { map_unary(args, [](float x, float s) { return x + s; }); }
FG_KERNEL(unary_mul_scalar, UnaryArgs) { map_unary(args, [](float x, float s) { return x * s; }); }

// --- relu: y = max(x, 0); dL/dx = dL/dy · [y > 0] ---
FG_KERNEL(unary_relu, UnaryArgs) { map_unary(args, [](float x, float) { return relu_forward(x); }); }
FG_KERNEL(binary_relu_backward, BinaryArgs) {
    map_binary(args, [](float y, float g, float) { return relu_backward(y, g); });
}

// --- leaky_relu: y = x > 0 ? x : slope·x; dL/dx = dL/dy · (x > 0 ? 1 : slope) ---
FG_KERNEL(unary_leaky_relu, UnaryArgs) {
    map_unary(args, [](float x, float slope) { return leaky_relu_forward(x, slope); });
}
FG_KERNEL(binary_leaky_relu_backward, BinaryArgs) {
    map_binary(args, [](float x, float g, float slope) { return leaky_relu_backward(x, g, slope); });
}

// --- tanh: dL/dx = dL/dy · (1 − y²) ---
FG_KERNEL(unary_tanh, UnaryArgs) { map_unary(args, [](float x, float) { return tanh_forward(x); }); }
FG_KERNEL(binary_tanh_backward, BinaryArgs) {
    map_binary(args, [](float y, float g, float) { return tanh_backward(y, g); });
}

// --- sigmoid: y = 1 / (1 + e^−x); dL/dx = dL/dy · y(1 − y) ---
FG_KERNEL(unary_sigmoid, UnaryArgs) { map_unary(args, [](float x, float) { return sigmoid_forward(x); }); }
FG_KERNEL(binary_sigmoid_backward, BinaryArgs) {
    map_binary(args, [](float y, float g, float) { return sigmoid_backward(y, g); });
}

// --- binary cross-entropy (src/ops/bce.rs): logs clamped at −100, p(1 − p) floored at 1e-12,
// NaN for a prediction outside [0, 1] or NaN (common.cuh) ---
// The loss itself, bce_loss in common.cuh, is summed as it is computed (reduce.cu, sum_bce_loss).
// Backward, f(p, t, dL/dloss): the elementwise rule times the incoming (scalar) gradient.
FG_KERNEL(ternary_bce_backward_pred, TernaryArgs) {
    map_ternary(args, [](float p, float t, float g, float scale) {
        float local = scale * (p - t) / bce_floored_variance(p);
        return local * g;
    });
}
FG_KERNEL(ternary_bce_backward_target, TernaryArgs) {
    map_ternary(args, [](float p, float, float g, float scale) {
        float local = scale * (clamped_log(1.0f - p) - clamped_log(p));
        return local * g;
    });
}

// --- the gradient of a sum: n copies of x[0] · p ---
FG_KERNEL(expand_scalar, UnaryArgs) {
    for (u64 i = global_thread(); i < args.n; i += grid_stride()) {
        args.y[i] = args.x[0] * args.p;
    }
}

// --- a constant fill: y[i] = p (x unused) ---
FG_KERNEL(fill, UnaryArgs) {
    for (u64 i = global_thread(); i < args.n; i += grid_stride()) {
        args.y[i] = args.p;
    }
}

// --- a copy between buffers of one device: y[i] = x[i] (a graph's input, refilled) ---
FG_KERNEL(copy, UnaryArgs) { map_unary(args, [](float x, float) { return x; }); }

// --- parts one after another (Tensor::cat), in one launch: out[starts[p] + j] = parts[p][j] ---
#define CONCAT_MAX_PARTS 8

struct ConcatArgs {
    const float* parts[CONCAT_MAX_PARTS];
    u64 starts[CONCAT_MAX_PARTS + 1];  // prefix sums of the parts' lengths
    float* out;
    u32 count;
};

FG_KERNEL(concat, ConcatArgs) {
    for (u64 i = global_thread(); i < args.starts[args.count]; i += grid_stride()) {
        u32 part = 0;
        while (i >= args.starts[part + 1]) {
            ++part;
        }
        args.out[i] = args.parts[part][i - args.starts[part]];
    }
}
