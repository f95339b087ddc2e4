//! Shuffled mini-batches of images as tensors, like PyTorch's `DataLoader(shuffle=True)`.

use crate::device::Device;
use crate::rng::Generator;
use crate::tensor::Tensor;

/// Serves a set of equally sized byte images as `[batch, pixels]` tensors scaled to `[-1, 1]`
/// (torchvision's `ToTensor()` then `Normalize((0.5,), (0.5,))`), in an order shuffled anew
/// each epoch. The last, shorter batch is kept, as PyTorch's default `drop_last=False` does.
///
/// Epoch `e`'s order depends only on `(seed, e)`, so training can resume mid-epoch from a
/// step count alone.
#[derive(Clone, Debug)]
pub struct DataLoader<'a> {
    images: &'a [u8],
    pixels: usize,
    batch_size: usize,
    seed: u64,
}

impl<'a> DataLoader<'a> {
    /// # Panics
    /// If `pixels` or `batch_size` is zero, or `images` is not a whole number of images.
    pub fn new(images: &'a [u8], pixels: usize, batch_size: usize, seed: u64) -> Self {
        assert!(
            pixels > 0 && batch_size > 0,
            "DataLoader: pixels and batch_size must be positive"
        );
        assert_eq!(
            images.len() % pixels,
            0,
            "DataLoader: a partial image at the end"
        );
        DataLoader {
            images,
            pixels,
            batch_size,
            seed,
        }
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.images.len() / self.pixels
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Batches per epoch, the last one possibly short (60 000 / 64 → 938).
    pub fn batches_per_epoch(&self) -> usize {
        self.len().div_ceil(self.batch_size)
    }

    /// The order in which epoch `epoch` visits the images: a Fisher–Yates shuffle driven by a
    /// Philox stream of its own (key = seed, counters from `epoch · 2⁴⁰`).
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.len();
        let mut order: Vec<usize> = (0..n).collect();
        let stream = Generator::from_state(self.seed, epoch << 40).draw(n);
        for i in (1..n).rev() {
            let word = stream.block((i / 4) as u64)[i % 4];
            // A uniform index in 0..=i (multiply-shift; its bias, < i / 2³², is negligible).
            let j = ((u64::from(word) * (i as u64 + 1)) >> 32) as usize;
            order.swap(i, j);
        }
        order
    }

    /// Batch `index` of an epoch whose order is `order`.
    pub fn batch(&self, order: &[usize], index: usize, device: &Device) -> Tensor {
        let start = index * self.batch_size;
        let members = &order[start..(start + self.batch_size).min(order.len())];
        let mut values = Vec::with_capacity(members.len() * self.pixels);
        for &image in members {
            let pixels = &self.images[image * self.pixels..(image + 1) * self.pixels];
            values.extend(pixels.iter().map(|&p| (f32::from(p) / 255.0 - 0.5) / 0.5));
        }
        Tensor::from_vec(values, &[members.len(), self.pixels], device)
    }

    /// All batches of epoch `epoch`, in order.
    pub fn epoch<'s>(
        &'s self,
        epoch: u64,
        device: &'s Device,
    ) -> impl Iterator<Item = Tensor> + 's {
        let order = self.order(epoch);
        (0..self.batches_per_epoch()).map(move |index| self.batch(&order, index, device))
    }
}
