//! A cache of host buffers by length, so that a training step, which makes the same tensors
//! every time, stops asking the system allocator for memory after the first step. Large fresh
//! allocations are not free: the kernel hands out zeroed pages one page fault at a time, which
//! cost the GAN's CPU step more than its elementwise ops (see benches/RESULTS.md).
//!
//! A [`CpuStorage`](super::CpuStorage) returns its buffer here when dropped; ops take theirs
//! with [`take`], whose contents are stale: every op that takes one writes all of it.

use std::collections::HashMap;
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
        vec![0.0; len]
    })
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
