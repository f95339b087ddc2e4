//! A cache of host buffers by length, so that a training step, which makes the same tensors
//! every time, stops asking the system allocator for memory after the first step. Large fresh
//! allocations are not free: the kernel hands out zeroed pages one page fault at a time, which
//! cost the GAN's CPU step more than its elementwise ops (see benches/RESULTS.md).
//!
//! A [`CpuStorage`](super::CpuStorage) returns its buffer here when dropped; ops take theirs
//! with [`take`], whose contents are stale: every op that takes one writes all of it. The
//! matrix products pack their operands into [`LineAligned`] buffers from the same cache.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The most floats the cache keeps (1 GiB); buffers beyond it go back to the system.
const MAX_CACHED_FLOATS: usize = 1 << 28;

struct Cache {
    free: HashMap<usize, Vec<Vec<f32>>>,
    cached_floats: usize,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Buffers [`take`] could not find in the cache and asked the system for.
static FRESH_BUFFERS: AtomicU64 = AtomicU64::new(0);

/// How many buffers so far had to come from the system allocator rather than the cache (for
/// tests and diagnostics: a training step, once warm, should add none).
pub fn fresh_buffers() -> u64 {
    FRESH_BUFFERS.load(Ordering::Relaxed)
}

/// A buffer of `len` floats with unspecified (but initialised) contents: the caller
/// overwrites every element.
pub fn take(len: usize) -> Vec<f32> {
    let reused = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .and_then(|cache| {
            let buffer = cache.free.get_mut(&len)?.pop()?;
            cache.cached_floats -= len;
            Some(buffer)
        });
    reused.unwrap_or_else(|| {
        FRESH_BUFFERS.fetch_add(1, Ordering::Relaxed);
        allocate(len)
    })
}

/// `len` zeros from the system allocator; where it has no room, a panic that says how much
/// was asked for (as PyTorch's "not enough memory" error) rather than an abort.
///
/// # Panics
/// If the memory cannot be allocated.
fn allocate(len: usize) -> Vec<f32> {
    let mut buffer = Vec::new();
    if buffer.try_reserve_exact(len).is_err() {
        let gib = len as f64 * size_of::<f32>() as f64 / f64::from(1 << 30);
        panic!("not enough memory: a buffer of {len} floats ({gib:.1} GiB) could not be allocated");
    }
    buffer.resize(len, 0.0);
    buffer
}

/// Keeps `buffer` for a later [`take`] of its length.
pub fn give_back(buffer: Vec<f32>) {
    let len = buffer.len();
    if len == 0 {
        return;
    }
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(|| Cache {
        free: HashMap::new(),
        cached_floats: 0,
    });
    if cache.cached_floats + len <= MAX_CACHED_FLOATS {
        cache.cached_floats += len;
        cache.free.entry(len).or_default().push(buffer);
    }
}

/// Bytes in a cache line.
const LINE_BYTES: usize = 64;
/// Floats in a cache line.
const LINE_FLOATS: usize = LINE_BYTES / size_of::<f32>();

/// Where, in a buffer `len + 15` floats long, the `len` floats that start on a cache line lie
/// (the next line begins 0 to 15 floats past the buffer's start: an `f32` is 4-byte aligned).
fn line_aligned_range(buffer: &[f32]) -> Range<usize> {
    let past_line = buffer.as_ptr().addr() % LINE_BYTES;
    let start = (LINE_BYTES - past_line) % LINE_BYTES / size_of::<f32>();
    start..start + buffer.len() - (LINE_FLOATS - 1)
}

/// The `len` floats of `buffer` that start on a cache line, `buffer` resized to hold them.
/// A 512-bit load from an address off a line boundary reads two lines (a split load, two of
/// the core's load slots), and the system allocator (glibc's) places large buffers 16 bytes
/// past a page boundary: every AVX-512 load of a packed panel split, until the panels were
/// placed here (benches/RESULTS.md, twenty-eighth session).
pub fn line_aligned(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len + LINE_FLOATS - 1, 0.0);
    let range = line_aligned_range(buffer);
    &mut buffer[range]
}

/// A buffer from the cache whose floats start on a cache line (see [`line_aligned`]), returned
/// to the cache when dropped: what the matrix products pack their operands into. It holds 15
/// floats more than it shows.
pub struct LineAligned(Vec<f32>);

impl LineAligned {
    /// `len` floats with unspecified (but initialised) contents, as [`take`].
    pub fn take(len: usize) -> Self {
        LineAligned(take(len + LINE_FLOATS - 1))
    }
}

impl std::ops::Deref for LineAligned {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0[line_aligned_range(&self.0)]
    }
}

impl std::ops::DerefMut for LineAligned {
    fn deref_mut(&mut self) -> &mut [f32] {
        let range = line_aligned_range(&self.0);
        &mut self.0[range]
    }
}

impl Drop for LineAligned {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::{line_aligned, LineAligned};

    #[test]
    fn aligned_buffers_start_on_a_cache_line() {
        // Lengths whose allocations land on different offsets from a line: small ones from
        // the allocator's bins, large ones from their own pages (16 bytes past a page).
        for len in [1, 3, 15, 16, 17, 1000, 4099, 1 << 20] {
            let mut taken = LineAligned::take(len);
            assert_eq!(
                (taken.len(), taken.as_ptr().addr() % 64),
                (len, 0),
                "take({len})"
            );
            taken.fill(1.0);
            // A thread's buffer, grown from whatever length it had.
            let mut grown = vec![0.0; len % 7];
            let slice = line_aligned(&mut grown, len);
            assert_eq!(
                (slice.len(), slice.as_ptr().addr() % 64),
                (len, 0),
                "line_aligned({len})"
            );
            slice.fill(2.0);
        }
    }
}
