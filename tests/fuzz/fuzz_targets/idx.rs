//! Feeds arbitrary bytes to the IDX decoder: it must return `Ok` or `Err`, never panic, and
//! never allocate much beyond what the input holds (libFuzzer's -rss_limit_mb catches that).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(array) = ferrograd::data::idx::decode(bytes) {
        assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
    }
});
