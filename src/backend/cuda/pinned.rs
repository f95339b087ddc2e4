//! Page-locked ("pinned") host buffers, for copies between host and GPU that do not make the
//! host wait. The driver copies asynchronously only from and to page-locked memory: from an
//! ordinary buffer, a copy to the GPU returns once the data is staged and a copy back returns
//! once it has arrived, so every batch uploaded and every loss read back would stall the host
//! behind all the work queued before it.
//!
//! A copy through a buffer of this pool records an event behind itself on the stream; the
//! buffer goes back to the pool at once and is handed out again only when its event has
//! completed, so a buffer is never overwritten while a copy still reads or writes it.

use std::ffi::c_void;
use std::sync::Mutex;

use cudarc::driver::{result, sys};

/// Buffers the pool keeps; past this many busy ones, `acquire` waits for the oldest.
const MAX_BUFFERS: usize = 8;

/// A page-locked host buffer and the event that completes once the last copy through it has.
pub(crate) struct PinnedBuffer {
    host: *mut u8,
    capacity: usize,
    event: sys::CUevent,
}

// SAFETY: the buffer is plain host memory and the event a handle usable from any thread; a
// PinnedBuffer has one owner at a time (the pool, or the copy using it).
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    /// The first `len` bytes (at most the capacity).
    pub fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.capacity);
        // SAFETY: `host` is a live allocation of `capacity` bytes that this buffer owns, and no
        // copy is using it (the pool hands it out only once its event has completed).
        unsafe { std::slice::from_raw_parts_mut(self.host, len) }
    }

    /// Makes the buffer's event complete once the work queued on `stream` so far has.
    pub fn record(&self, stream: sys::CUstream) -> Result<(), String> {
        // SAFETY: `event` and `stream` are live handles of the current context.
        unsafe { result::event::record(self.event, stream) }
            .map_err(|e| format!("cuEventRecord failed: {e:?}"))
    }

    /// Waits until the copies recorded on the buffer's event are done.
    pub fn wait(&self) -> Result<(), String> {
        // SAFETY: `event` is a live event.
        unsafe { result::event::synchronize(self.event) }.map_err(|e| {
            format!("copy between GPU and host failed (a kernel may have failed): {e:?}")
        })
    }

    /// Whether the copies recorded on the buffer's event are done.
    fn idle(&self) -> Result<bool, String> {
        // SAFETY: `event` is a live event.
        match unsafe { result::event::query(self.event) } {
            Ok(()) => Ok(true),
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NOT_READY => Ok(false),
            Err(e) => Err(format!(
                "cuEventQuery failed (a kernel may have failed): {e:?}"
            )),
        }
    }
}

/// Page-locked buffers of one context, reused from copy to copy.
#[derive(Default)]
pub(crate) struct PinnedPool {
    /// Buffers no one holds; some may still have a copy in flight (see [`PinnedBuffer::idle`]).
    free: Mutex<Vec<PinnedBuffer>>,
}

impl PinnedPool {
    /// A buffer of at least `bytes` with no copy in flight (the context must be current).
    pub fn acquire(&self, bytes: usize) -> Result<PinnedBuffer, String> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        // An idle buffer large enough, else any idle one (replaced below by a larger one).
        let mut idle = None;
        for (i, buffer) in free.iter().enumerate() {
            if buffer.idle()? {
                if buffer.capacity >= bytes {
                    idle = Some(i);
                    break;
                }
                idle.get_or_insert(i);
            }
        }
        let buffer = match idle {
            Some(i) => free.swap_remove(i),
            None if free.len() >= MAX_BUFFERS => {
                let oldest = free.remove(0);
                oldest.wait()?;
                oldest
            }
            None => new_buffer(bytes)?,
        };
        drop(free);
        if buffer.capacity >= bytes {
            return Ok(buffer);
        }
        free_buffer(buffer);
        new_buffer(bytes)
    }

    /// Takes back a buffer, whose copies may still be in flight (its event says when not).
    pub fn release(&self, buffer: PinnedBuffer) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.push(buffer);
    }
}

impl Drop for PinnedPool {
    fn drop(&mut self) {
        let free = self.free.get_mut().unwrap_or_else(|e| e.into_inner());
        for buffer in free.drain(..) {
            let _ = buffer.wait();
            free_buffer(buffer);
        }
    }
}

/// A new buffer of `bytes`, at least 256 KiB (a batch of MNIST, 200 KB, and a step's
/// statistics then share one size: no buffer too small for the next upload is made and
/// replaced, a page-locked allocation and free per step), its event complete.
fn new_buffer(bytes: usize) -> Result<PinnedBuffer, String> {
    let capacity = bytes.max(256 << 10);
    // SAFETY: a plain page-locked allocation in the current context; freed by free_buffer.
    let host = unsafe { result::malloc_host(capacity, 0) }
        .map_err(|e| format!("cannot allocate {capacity} bytes of page-locked memory: {e:?}"))?
        as *mut u8;
    let event =
        result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING).map_err(|e| {
            // SAFETY: `host` came from malloc_host and is not used again.
            let _ = unsafe { result::free_host(host as *mut c_void) };
            format!("cuEventCreate failed: {e:?}")
        })?;
    Ok(PinnedBuffer {
        host,
        capacity,
        event,
    })
}

/// Frees a buffer whose copies are done.
fn free_buffer(buffer: PinnedBuffer) {
    // SAFETY: both came from new_buffer and are not used again; no copy uses the memory.
    unsafe {
        let _ = result::event::destroy(buffer.event);
        let _ = result::free_host(buffer.host as *mut c_void);
    }
}
