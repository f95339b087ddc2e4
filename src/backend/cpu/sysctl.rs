//! macOS's `sysctlbyname`: what the CPU backend asks the system about the processor (its cores,
//! its name).

use std::ffi::{c_char, c_int, c_void, CStr};

extern "C" {
    /// Reads the sysctl `name` into `old_value`, of `*old_length` bytes, and sets
    /// `*old_length` to the bytes written (libSystem's, which every Rust program links). With
    /// a null `old_value` it sets `*old_length` to the bytes the value needs.
    fn sysctlbyname(
        name: *const c_char,
        old_value: *mut c_void,
        old_length: *mut usize,
        new_value: *mut c_void,
        new_length: usize,
    ) -> c_int;
}

/// Reads `name` into `value`; the bytes written, or `None` if the read failed.
fn read(name: &CStr, value: &mut [u8]) -> Option<usize> {
    let mut length = value.len();
    // SAFETY: the name is a NUL-terminated C string; `value` is live and writable for
    // `length` bytes (null where that is 0, asking only for the length); a null new value
    // with length 0 sets nothing.
    let status = unsafe {
        sysctlbyname(
            name.as_ptr(),
            if value.is_empty() {
                std::ptr::null_mut()
            } else {
                value.as_mut_ptr().cast()
            },
            &mut length,
            std::ptr::null_mut(),
            0,
        )
    };
    (status == 0).then_some(length)
}

/// The integer sysctl `name` (`hw.physicalcpu`).
pub(super) fn int(name: &CStr) -> Option<c_int> {
    let mut value = [0u8; std::mem::size_of::<c_int>()];
    let written = read(name, &mut value)?;
    (written == value.len()).then(|| c_int::from_ne_bytes(value))
}

/// The string sysctl `name` (`machdep.cpu.brand_string`), without its NUL.
pub(super) fn string(name: &CStr) -> Option<String> {
    let mut value = vec![0u8; read(name, &mut [])?];
    if value.is_empty() {
        return None;
    }
    let written = read(name, &mut value)?;
    let text = CStr::from_bytes_until_nul(value.get(..written)?).ok()?;
    Some(text.to_string_lossy().into_owned())
}
