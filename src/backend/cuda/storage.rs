//! The CUDA backend's storage: every [`BackendStorage`] operation as a kernel launch.

use super::args::{
    broadcast_code, distribution_code, epilogue_code, gemm_dim, lhs_rule_code, AdamStepArgs,
    BinaryArgs, ConcatArgs, GemmArgs, GemmPairArgs, RandomArgs, SumArgs, SumRowsArgs, TernaryArgs,
    UnaryArgs, ADAM_MAX_TENSORS, CONCAT_MAX_PARTS,
};
use super::device::{CudaDevice, CudaPendingRead, DeviceBuffer};
use super::launch::{
    small_tiles_fit, small_tiles_for, Dim3, GemmPlan, LaunchConfig, SPLIT_K_MAX_TILES, SUM_CHUNK,
};
use super::recorded_products;
use crate::backend::{
    BackendStorage, BinaryKernel, Broadcast, Distribution, GemmDims, Identity, LhsRule,
    OptimizerKernel, TernaryKernel, UnaryKernel,
};
use crate::rng::PhiloxStream;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether matrix products may use TF32 tensor cores (see [`set_allow_tf32`]).
static ALLOW_TF32: AtomicBool = AtomicBool::new(false);

/// Lets CUDA matrix products use TF32 tensor cores (`gemm_tf32` in `kernels/gemm.cu`), as
/// PyTorch's `torch.backends.cuda.matmul.allow_tf32`. Off by default: TF32 keeps 10 mantissa
/// bits of each operand (products accurate to about 1e-3 relative; sums stay FP32), which is
/// plenty for training this GAN but not bit-compatible with FP32. Allowed, not required: a
/// one-column product (`gemv`) stays FP32, as do bias gradients, and so does every product on
/// a GPU without TF32 tensor cores (before sm_80; [`CudaDevice::has_tf32_tensor_cores`]), as
/// in PyTorch. Process-wide.
pub fn set_allow_tf32(allow: bool) {
    ALLOW_TF32.store(allow, Ordering::Relaxed);
}

/// Whether [`set_allow_tf32`] is on.
pub fn tf32_allowed() -> bool {
    ALLOW_TF32.load(Ordering::Relaxed)
}

/// Whether `device`'s products run on TF32 tensor cores: allowed, and there are some.
fn uses_tf32(device: &CudaDevice) -> bool {
    tf32_allowed() && device.has_tf32_tensor_cores()
}

/// Whether the FP32 tiled products use 32 × 32 tiles (see [`set_small_tiles`]).
static SMALL_TILES: AtomicBool = AtomicBool::new(false);

/// Lets every FP32 product that runs in 64 × 64 tiles run in 32 × 32 tiles of 128 threads
/// instead (`gemm_small`, and `gemm_pair_small` for a layer's two gradients), the split of k
/// unchanged: the same bits, on 4× the blocks, each one warp per scheduler (not two). Off
/// by default: which products gain depends on the GPU, so the autotuner (`tuning.rs`,
/// `Gan::tune_products`) times each product both ways and overrides this per product.
/// Process-wide.
pub fn set_small_tiles(on: bool) {
    SMALL_TILES.store(on, Ordering::Relaxed);
}

/// Whether [`set_small_tiles`] is on.
pub fn small_tiles_default() -> bool {
    SMALL_TILES.load(Ordering::Relaxed)
}

/// A tensor's elements in device memory, row-major.
#[derive(Debug)]
pub struct CudaStorage {
    buffer: DeviceBuffer,
}

impl CudaStorage {
    /// `data` uploaded to `device`.
    pub fn from_vec(data: Vec<f32>, device: &CudaDevice) -> Self {
        CudaStorage {
            buffer: device.upload(bytemuck::cast_slice(&data)),
        }
    }

    /// `len` copies of `value` on `device`.
    pub fn full(len: usize, value: f32, device: &CudaDevice) -> Self {
        let out = CudaStorage::uninit(len, device);
        let args = UnaryArgs {
            x: 0,
            y: out.pointer(),
            n: len as u64,
            p: value,
        };
        device.launch("fill", LaunchConfig::for_items(len as u64), args);
        out
    }

    /// Values `0..len` of the draw `stream`, generated on the device (`random.cu`).
    pub fn random(
        len: usize,
        distribution: Distribution,
        stream: PhiloxStream,
        device: &CudaDevice,
    ) -> Self {
        let out = CudaStorage::uninit(len, device);
        let (code, a, b) = distribution_code(distribution);
        let blocks = (len as u64).div_ceil(4);
        let args = RandomArgs {
            out: out.pointer(),
            n: len as u64,
            draw: device.philox_draw(stream, blocks),
            distribution: code,
            a,
            b,
        };
        device.launch("random_fill", LaunchConfig::for_items(blocks), args);
        out
    }

    /// The device that holds the buffer.
    pub fn device(&self) -> &CudaDevice {
        &self.buffer.device
    }

    /// The values of several storages of one device, read back with one wait.
    pub fn read_all(storages: &[&CudaStorage]) -> Vec<Vec<f32>> {
        match storages.first() {
            None => Vec::new(),
            Some(first) => {
                let buffers: Vec<&DeviceBuffer> = storages.iter().map(|s| &s.buffer).collect();
                first.device().copy_to_host(&buffers)
            }
        }
    }

    /// [`CudaStorage::read_all`] without waiting: the copies start behind the work launched so
    /// far, and [`CudaPendingRead::wait`] waits for them alone.
    pub fn read_all_later(storages: &[&CudaStorage]) -> CudaPendingRead {
        let buffers: Vec<&DeviceBuffer> = storages.iter().map(|s| &s.buffer).collect();
        storages[0].device().copy_to_host_later(&buffers)
    }

    pub(super) fn uninit(len: usize, device: &CudaDevice) -> Self {
        CudaStorage {
            buffer: device.buffer(len),
        }
    }

    pub(super) fn pointer(&self) -> u64 {
        self.buffer.pointer
    }

    pub(super) fn len(&self) -> u64 {
        self.buffer.len as u64
    }

    /// `scale` times the sum of `first_pass`'s values over this buffer (`sum_partials`: its
    /// elements; `sum_<map>`: the map of it and `y`), then `sum_finish` over the blocks' partial
    /// sums where there is more than one block.
    fn sum_with(&self, first_pass: &str, y: u64, scale: f32) -> Self {
        let device = self.device();
        let blocks = self.len().div_ceil(SUM_CHUNK).max(1);
        let partials = CudaStorage::uninit(2 * blocks as usize, device); // f64 partial sums
        let out = CudaStorage::uninit(1, device);
        let args = SumArgs {
            x: self.pointer(),
            y,
            partials: partials.pointer(),
            out: out.pointer(),
            n: self.len(),
            blocks,
            scale,
        };
        device.launch(first_pass, LaunchConfig::sum_partials(self.len()), args);
        if blocks > 1 {
            device.launch("sum_finish", LaunchConfig::single_block(), args);
        }
        out
    }

    /// `out = epilogue(self · rhs + bias)`'s arguments, without split-K or dropout.
    fn gemm_args<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        out: &Self,
        dims: GemmDims,
        epilogue: &E,
    ) -> GemmArgs {
        let product = GemmArgs::product(self.pointer(), rhs.pointer(), out.pointer(), dims);
        GemmArgs {
            bias: bias.map_or(0, CudaStorage::pointer),
            epilogue: epilogue_code(E::NAME),
            p: epilogue.param(),
            ..product
        }
    }

    /// `out = self · rhs` (no bias, no epilogue), with A read through `rule` if any, which
    /// the caller has checked the GEMM applies ([`gemm_applies`]).
    fn gemm_args_through(
        &self,
        rhs: &Self,
        out: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> GemmArgs {
        let args = self.gemm_args(rhs, None, out, dims, &Identity);
        let Some(rule) = rule else {
            return args;
        };
        GemmArgs {
            lhs_saved: rule.saved.pointer(),
            lhs_mask: rule.mask.map_or(0, CudaStorage::pointer),
            lhs_rule: lhs_rule_code(rule.rule.name()).expect("a rule the GEMM applies"),
            lhs_rule_p: rule.rule.param(),
            ..args
        }
    }

    /// `out[i] = binary_<name>(self[i], rhs[…], param)`, `rhs` lined up by `broadcast`.
    fn binary_named(&self, name: &str, param: f32, rhs: &Self, broadcast: Broadcast) -> Self {
        let out = CudaStorage::uninit(self.buffer.len, self.device());
        let args = BinaryArgs {
            a: self.pointer(),
            b: rhs.pointer(),
            out: out.pointer(),
            n: self.len(),
            cols: rhs.len(),
            p: param,
            broadcast: broadcast_code(broadcast),
        };
        self.device().launch(
            &format!("binary_{name}"),
            LaunchConfig::for_items(self.len()),
            args,
        );
        out
    }

    /// The product of [`BackendStorage::gemm_with_lhs_row_sums`], planned: `(product, its
    /// output, the row sums)`, the row sums computed by the GEMM where it can (without split-K),
    /// else `None`: the caller sums them after the product.
    fn plan_with_lhs_row_sums(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> (PlannedGemm, CudaStorage, Option<CudaStorage>) {
        assert!(
            dims.lhs_transposed,
            "gemm_with_lhs_row_sums: A is stored [k, m]"
        );
        let device = self.device();
        let out = CudaStorage::uninit(dims.m * dims.n, device);
        let sums = sums_rows_in_the_gemm(device, dims).then(|| CudaStorage::uninit(dims.m, device));
        let args = GemmArgs {
            row_sums: sums.as_ref().map_or(0, CudaStorage::pointer),
            ..self.gemm_args_through(rhs, &out, dims, rule)
        };
        let product = PlannedGemm::new(device, args, dims);
        recorded_products::note_row_sums(dims);
        (product, out, sums)
    }
}

/// A product ready to launch: the kernel [`GemmPlan`] picks for its shape (the tensor-core one
/// where TF32 is allowed), its geometry, and its arguments with split-K's partial sums and tile
/// counters filled in (the buffer of partial sums held here until the launch is queued).
struct PlannedGemm {
    kernel: &'static str,
    config: LaunchConfig,
    args: GemmArgs,
    dims: GemmDims,
    _partials: Option<CudaStorage>,
}

impl PlannedGemm {
    fn new(device: &CudaDevice, mut args: GemmArgs, dims: GemmDims) -> PlannedGemm {
        // One column, A read along its rows, nothing else to write: a warp per row, in FP32
        // even where TF32 is allowed (each element of A is read once: tensor cores would only
        // round it).
        if dims.n == 1
            && !dims.lhs_transposed
            && args.mask == 0
            && args.row_sums == 0
            && args.lhs_rule == 0
        {
            return PlannedGemm {
                kernel: "gemv",
                config: LaunchConfig::gemv(dims.m),
                args,
                dims,
                _partials: None,
            };
        }
        let plan = plan_for(device, dims);
        // The 64 × 64 kernel and its launch geometry (m, n, splits).
        type Geometry = fn(usize, usize, usize) -> LaunchConfig;
        let (kernel, tiled_config): (&str, Geometry) = if uses_tf32(device) {
            ("gemm_tf32", LaunchConfig::gemm_tf32)
        } else {
            ("gemm", LaunchConfig::gemm)
        };
        let (kernel, config, partials) = match plan {
            GemmPlan::Large => {
                assert_eq!(args.lhs_rule, 0, "gemm_large reads no rule (gemm_applies)");
                ("gemm_large", LaunchConfig::gemm_large(dims.m, dims.n), None)
            }
            GemmPlan::Tiled { splits: 1, .. } => (kernel, tiled_config(dims.m, dims.n, 1), None),
            GemmPlan::Tiled { splits, k_chunk } => {
                // Deterministic split-K: partial tiles, which the last block of each tile to
                // finish adds in a fixed order.
                let config = tiled_config(dims.m, dims.n, splits);
                let tiles = tiles(config);
                assert!(tiles <= SPLIT_K_MAX_TILES, "gemm: {tiles} split tiles");
                let partials = CudaStorage::uninit(splits * dims.m * dims.n, device);
                args.partials = partials.pointer();
                args.tile_counters = device.split_k_counters();
                args.k_chunk = gemm_dim(k_chunk);
                (kernel, config, Some(partials))
            }
        };
        if kernel == "gemm" {
            recorded_products::note_product(dims);
        }
        PlannedGemm {
            kernel,
            config,
            args,
            dims,
            _partials: partials,
        }
    }

    /// Its `gemm` grid in 32 × 32 tiles (`gemm_small`), the split of k unchanged, where
    /// [`set_small_tiles_for`](super::launch::set_small_tiles_for) (the autotuner) or else
    /// [`set_small_tiles`] asks for them and their split-K counters allow.
    fn small_tiles(&self) -> Option<LaunchConfig> {
        let GemmDims { m, n, .. } = self.dims;
        let asked = small_tiles_for(self.dims).unwrap_or(small_tiles_default());
        let small = asked && self.kernel == "gemm" && small_tiles_fit(m, n);
        small.then(|| LaunchConfig::gemm_small(m, n, self.config.grid.z as usize))
    }

    /// Launches it alone (in 32 × 32 tiles where asked).
    fn launch(self, device: &CudaDevice) {
        match self.small_tiles() {
            Some(small) => device.launch("gemm_small", small, self.args),
            None => device.launch(self.kernel, self.config, self.args),
        }
    }

    /// Launches both: as one `gemm_pair` (`gemm_pair_small` in 32 × 32 tiles where asked) where
    /// both are `gemm` launches, or one `gemm_pair_tf32` where both are `gemm_tf32` ones, whose
    /// split-K counters fit side by side (the second's after the first's), else one after the
    /// other.
    fn launch_pair(self, mut second: PlannedGemm, device: &CudaDevice) {
        let both_fit = |a: LaunchConfig, b: LaunchConfig| tiles(a) + tiles(b) <= SPLIT_K_MAX_TILES;
        let (kernel, first, other) = match (self.kernel, self.small_tiles(), second.small_tiles()) {
            ("gemm_tf32", ..) => ("gemm_pair_tf32", self.config, second.config),
            (_, Some(a), Some(b)) if both_fit(a, b) => ("gemm_pair_small", a, b),
            _ => ("gemm_pair", self.config, second.config),
        };
        let pairable = matches!(self.kernel, "gemm" | "gemm_tf32")
            && second.kernel == self.kernel
            && both_fit(first, other);
        if !pairable {
            self.launch(device);
            second.launch(device);
            return;
        }
        second.args.tile_counters += 4 * tiles(first) as u64;
        let grid = |config: LaunchConfig, axis: fn(Dim3) -> u32| {
            i32::try_from(axis(config.grid)).expect("gemm_pair: grid")
        };
        let args = GemmPairArgs {
            product: [self.args, second.args],
            tiles_x: [grid(first, |g| g.x), grid(other, |g| g.x)],
            tiles_y: [grid(first, |g| g.y), grid(other, |g| g.y)],
            splits: [grid(first, |g| g.z), grid(other, |g| g.z)],
        };
        device.launch(kernel, LaunchConfig::gemm_pair(first, other), args);
    }
}

/// The tiles of a tiled GEMM's grid (one split-K counter each).
fn tiles(config: LaunchConfig) -> usize {
    (config.grid.x * config.grid.y) as usize
}

/// Runs the product `args` describes (see [`PlannedGemm`]).
fn launch_gemm(device: &CudaDevice, args: GemmArgs, dims: GemmDims) {
    PlannedGemm::new(device, args, dims).launch(device);
}

/// How a product runs on `device`: [`GemmPlan::for_product`]'s plan, in 64 × 64 tiles where
/// its products use TF32 (the tensor-core kernel has no others).
fn plan_for(device: &CudaDevice, dims: GemmDims) -> GemmPlan {
    match GemmPlan::for_product(dims) {
        GemmPlan::Large if uses_tf32(device) => GemmPlan::Tiled {
            splits: 1,
            k_chunk: dims.k,
        },
        plan => plan,
    }
}

/// Whether the GEMMs of `products` read their left operand through `rule` themselves: the tiled
/// kernels (gemm, gemm_small, the pairs, gemm_tf32) apply the rules gemm.cu has, gemm_large
/// none.
fn gemm_applies(rule: LhsRule<'_, CudaStorage>, products: &[GemmDims]) -> bool {
    let device = rule.saved.device();
    lhs_rule_code(rule.rule.name()).is_some()
        && products
            .iter()
            .all(|&dims| plan_for(device, dims) != GemmPlan::Large)
}

/// Whether the tiled GEMM (`gemm` or `gemm_tf32`) sums the rows of `op(A)` as it goes for this
/// product: only without split-K.
fn sums_rows_in_the_gemm(device: &CudaDevice, dims: GemmDims) -> bool {
    matches!(plan_for(device, dims), GemmPlan::Tiled { splits: 1, .. })
}

impl BackendStorage for CudaStorage {
    fn to_vec(&self) -> Vec<f32> {
        let mut values = self.device().copy_to_host(&[&self.buffer]);
        values.pop().expect("one buffer read")
    }

    fn write(&mut self, values: &[f32]) {
        assert_eq!(
            values.len(),
            self.buffer.len,
            "write: wrong number of values"
        );
        self.device()
            .write(&self.buffer, bytemuck::cast_slice(values));
    }

    fn copy_from(&mut self, src: &Self) {
        assert_eq!(self.len(), src.len(), "copy_from: lengths differ");
        let args = UnaryArgs {
            x: src.pointer(),
            y: self.pointer(),
            n: self.len(),
            p: 0.0,
        };
        self.device()
            .launch("copy", LaunchConfig::for_items(self.len()), args);
    }

    fn concat(parts: &[&Self]) -> Self {
        let device = parts.first().expect("concat: no parts").device();
        let out = CudaStorage::uninit(parts.iter().map(|part| part.buffer.len).sum(), device);
        // One launch per CONCAT_MAX_PARTS parts (a GAN step joins two).
        let mut offset = 0;
        for group in parts.chunks(CONCAT_MAX_PARTS) {
            let mut args = ConcatArgs {
                parts: [0; CONCAT_MAX_PARTS],
                starts: [0; CONCAT_MAX_PARTS + 1],
                out: out.pointer() + 4 * offset,
                count: group.len() as u32,
            };
            for (slot, part) in group.iter().enumerate() {
                args.parts[slot] = part.pointer();
                args.starts[slot + 1] = args.starts[slot] + part.len();
            }
            let len = args.starts[group.len()];
            if len > 0 {
                device.launch("concat", LaunchConfig::for_items(len), args);
            }
            offset += len;
        }
        out
    }

    fn slice(&self, start: usize, len: usize) -> Self {
        let out = CudaStorage::uninit(len, self.device());
        let args = UnaryArgs {
            x: self.pointer() + 4 * start as u64,
            y: out.pointer(),
            n: len as u64,
            p: 0.0,
        };
        self.device()
            .launch("copy", LaunchConfig::for_items(len as u64), args);
        out
    }

    fn unary<K: UnaryKernel>(&self, kernel: &K) -> Self {
        let out = CudaStorage::uninit(self.buffer.len, self.device());
        let args = UnaryArgs {
            x: self.pointer(),
            y: out.pointer(),
            n: self.len(),
            p: kernel.param(),
        };
        let name = format!("unary_{}", K::NAME);
        self.device()
            .launch(&name, LaunchConfig::for_items(self.len()), args);
        out
    }

    fn binary<K: BinaryKernel>(&self, rhs: &Self, broadcast: Broadcast, kernel: &K) -> Self {
        self.binary_named(K::NAME, kernel.param(), rhs, broadcast)
    }

    fn ternary<K: TernaryKernel>(&self, b: &Self, c: &Self, kernel: &K) -> Self {
        let out = CudaStorage::uninit(self.buffer.len, self.device());
        let args = TernaryArgs {
            a: self.pointer(),
            b: b.pointer(),
            c: c.pointer(),
            out: out.pointer(),
            n: self.len(),
            p: kernel.param(),
        };
        let name = format!("ternary_{}", K::NAME);
        self.device()
            .launch(&name, LaunchConfig::for_items(self.len()), args);
        out
    }

    fn sum_all(&self, scale: f32) -> Self {
        self.sum_with("sum_partials", 0, scale)
    }

    fn map_sum_all<K: BinaryKernel>(&self, rhs: &Self, _kernel: &K, scale: f32) -> Self {
        assert_eq!(self.len(), rhs.len(), "map_sum_all: lengths differ");
        self.sum_with(&format!("sum_{}", K::NAME), rhs.pointer(), scale)
    }

    fn sum_rows(&self, rows: usize, cols: usize) -> Self {
        let out = CudaStorage::uninit(cols, self.device());
        let args = SumRowsArgs {
            x: self.pointer(),
            out: out.pointer(),
            rows: rows as u64,
            cols: cols as u64,
        };
        self.device()
            .launch("sum_rows", LaunchConfig::for_items(cols as u64), args);
        out
    }

    fn expand_scalar(&self, len: usize, scale: f32) -> Self {
        let out = CudaStorage::uninit(len, self.device());
        let args = UnaryArgs {
            x: self.pointer(),
            y: out.pointer(),
            n: len as u64,
            p: scale,
        };
        self.device()
            .launch("expand_scalar", LaunchConfig::for_items(len as u64), args);
        out
    }

    fn gemm<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
    ) -> Self {
        let out = CudaStorage::uninit(dims.m * dims.n, self.device());
        let args = self.gemm_args(rhs, bias, &out, dims, epilogue);
        launch_gemm(self.device(), args, dims);
        out
    }

    fn through_rule(&self, rule: LhsRule<'_, Self>) -> Self {
        // The rule's elementwise kernels, dropout's product and then `binary_<rule>`: the
        // values the GEMM's own reading gives, for the products it cannot read so.
        let masked;
        let grad = match rule.mask {
            Some(mask) => {
                masked = self.binary_named("mul", 0.0, mask, Broadcast::None);
                &masked
            }
            None => self,
        };
        let (name, param) = (rule.rule.name(), rule.rule.param());
        rule.saved.binary_named(name, param, grad, Broadcast::None)
    }

    fn gemm_through_rule(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> Self {
        if let Some(rule) = rule.filter(|&rule| !gemm_applies(rule, &[dims])) {
            return self.through_rule(rule).gemm_through_rule(rhs, dims, None);
        }
        let out = CudaStorage::uninit(dims.m * dims.n, self.device());
        let args = self.gemm_args_through(rhs, &out, dims, rule);
        launch_gemm(self.device(), args, dims);
        out
    }

    fn gemm_with_lhs_row_sums(
        &self,
        rhs: &Self,
        dims: GemmDims,
        rule: Option<LhsRule<'_, Self>>,
    ) -> (Self, Self) {
        // The row sums come from the rows as read, so a rule the GEMM applies needs the GEMM to
        // sum them too.
        let fused =
            |rule| gemm_applies(rule, &[dims]) && sums_rows_in_the_gemm(self.device(), dims);
        if let Some(rule) = rule.filter(|&rule| !fused(rule)) {
            return self
                .through_rule(rule)
                .gemm_with_lhs_row_sums(rhs, dims, None);
        }
        let (product, out, sums) = self.plan_with_lhs_row_sums(rhs, dims, rule);
        product.launch(self.device());
        (out, sums.unwrap_or_else(|| self.sum_rows(dims.k, dims.m)))
    }

    fn gemm_pair_with_lhs_row_sums(
        &self,
        rule: Option<LhsRule<'_, Self>>,
        (rhs, dims): (&Self, GemmDims),
        (rhs2, dims2): (&Self, GemmDims),
    ) -> (Self, (Self, Self)) {
        let fused = |rule| {
            gemm_applies(rule, &[dims, dims2]) && sums_rows_in_the_gemm(self.device(), dims2)
        };
        if let Some(rule) = rule.filter(|&rule| !fused(rule)) {
            let read = self.through_rule(rule);
            return read.gemm_pair_with_lhs_row_sums(None, (rhs, dims), (rhs2, dims2));
        }
        let device = self.device();
        let out = CudaStorage::uninit(dims.m * dims.n, device);
        let first = PlannedGemm::new(device, self.gemm_args_through(rhs, &out, dims, rule), dims);
        let (second, out2, sums) = self.plan_with_lhs_row_sums(rhs2, dims2, rule);
        first.launch_pair(second, device);
        let sums = sums.unwrap_or_else(|| self.sum_rows(dims2.k, dims2.m));
        (out, (out2, sums))
    }

    fn gemm_dropout<E: UnaryKernel>(
        &self,
        rhs: &Self,
        bias: Option<&Self>,
        dims: GemmDims,
        epilogue: &E,
        p: f32,
        stream: PhiloxStream,
    ) -> (Self, Self) {
        let device = self.device();
        let out = CudaStorage::uninit(dims.m * dims.n, device);
        let mask = CudaStorage::uninit(dims.m * dims.n, device);
        let args = GemmArgs {
            dropout_p: p,
            mask: mask.pointer(),
            dropout: device.philox_draw(stream, (dims.m * dims.n).div_ceil(4) as u64),
            ..self.gemm_args(rhs, bias, &out, dims, epilogue)
        };
        launch_gemm(device, args, dims);
        (out, mask)
    }

    fn optimizer_step<K: OptimizerKernel>(
        params: &mut [&mut Self],
        grads: &[&Self],
        state_a: &mut [&mut Self],
        state_b: &mut [&mut Self],
        scalars: &mut Self,
        kernel: &K,
    ) {
        let device = scalars.device();
        let [lr, beta1, beta2, eps, weight_decay] = kernel.hyper_params();
        // One launch per ADAM_MAX_TENSORS parameters, their addresses inside the arguments;
        // the last one moves the step count on.
        for start in (0..params.len()).step_by(ADAM_MAX_TENSORS) {
            let end = (start + ADAM_MAX_TENSORS).min(params.len());
            let mut args = AdamStepArgs {
                tensors: [0; 4 * ADAM_MAX_TENSORS],
                offsets: [0; ADAM_MAX_TENSORS + 1],
                lengths: [0; ADAM_MAX_TENSORS],
                scalars: scalars.pointer(),
                count: (end - start) as u32,
                advance: u32::from(end == params.len()),
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            };
            for (slot, i) in (start..end).enumerate() {
                args.tensors[4 * slot..4 * slot + 4].copy_from_slice(&[
                    params[i].pointer(),
                    grads[i].pointer(),
                    state_a[i].pointer(),
                    state_b[i].pointer(),
                ]);
                let len = params[i].len();
                args.lengths[slot] = len;
                args.offsets[slot + 1] = args.offsets[slot] + len.div_ceil(4);
            }
            let quads = args.offsets[end - start];
            device.launch(K::STEP, LaunchConfig::for_items(quads), args);
        }
    }
}
