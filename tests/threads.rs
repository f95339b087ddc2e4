//! `start_thread_pool`: the pool starts at the size asked for, and a later call that asks for
//! another size, which rayon cannot give a running pool, says so instead of going on at the
//! wrong size. One test: the pool is the process's.

use ferrograd::backend::cpu::start_thread_pool;
use ferrograd::Error;

#[test]
fn the_pool_starts_at_the_size_asked_for_and_refuses_another() {
    assert_eq!(start_thread_pool(Some(3)).unwrap(), 3);
    assert_eq!(rayon::current_num_threads(), 3);
    let workers = rayon::broadcast(|context| context.index());
    assert_eq!(workers, [0, 1, 2]);
    // Asking again for its size, or for none, keeps it.
    assert_eq!(start_thread_pool(Some(3)).unwrap(), 3);
    assert_eq!(start_thread_pool(None).unwrap(), 3);
    match start_thread_pool(Some(2)) {
        Err(Error::Device(reason)) => {
            assert!(reason.contains("already runs 3 threads"), "{reason}");
            assert!(reason.contains("resized to 2"), "{reason}");
        }
        other => panic!("resizing a running pool: {other:?}"),
    }
    // 0 threads means 1, as a fresh pool would take it.
    match start_thread_pool(Some(0)) {
        Err(Error::Device(reason)) => assert!(reason.contains("resized to 1"), "{reason}"),
        other => panic!("resizing a running pool to 0: {other:?}"),
    }
    assert_eq!(rayon::current_num_threads(), 3);
}
