//! The block cache as the `tunelab` binary installs it: freed large blocks come back for
//! requests of the same size, zeroed when asked, within the capacity, and `trim` empties it.

use tunelab::host_memory::{self, BlockCache, MIN_BLOCK};

#[global_allocator]
static ALLOC: BlockCache = BlockCache;

#[test]
fn freed_large_blocks_are_reused_zeroed_bounded_and_trimmed() {
    host_memory::set_capacity(4 * MIN_BLOCK);
    let n = MIN_BLOCK + 4096;

    // A block freed is handed back for the next request of the same size.
    let mut a = vec![7u8; n];
    a[n - 1] = 9;
    let ptr = a.as_ptr();
    drop(a);
    assert_eq!(host_memory::stats().0, n, "the freed block is held");
    let (_, hits, _) = host_memory::stats();
    let b = vec![0u8; n];
    assert_eq!(b.as_ptr(), ptr, "the same block comes back");
    assert_eq!(host_memory::stats().1, hits + 1);
    // `vec![0; n]` allocates zeroed memory: the old contents (7s and a 9) are gone.
    assert!(b.iter().all(|&x| x == 0), "a reused block asked for zeroed is zeroed");
    drop(b);

    // Another size does not take it.
    let c = vec![1u8; n + 1];
    assert_ne!(c.as_ptr(), ptr);
    drop(c);
    assert_eq!(host_memory::stats().0, 2 * n + 1);

    // Past the capacity the oldest blocks go back to the system.
    let big: Vec<Vec<u8>> = (0..4).map(|i| vec![1u8; MIN_BLOCK + i]).collect();
    drop(big);
    assert!(host_memory::stats().0 <= 4 * MIN_BLOCK, "held {} > capacity", host_memory::stats().0);

    // Small blocks never enter the cache.
    let held = host_memory::stats().0;
    drop(vec![0u8; MIN_BLOCK - 1]);
    assert_eq!(host_memory::stats().0, held);
    host_memory::trim();
    assert_eq!(host_memory::stats().0, 0, "trim gives everything back");

    // Turned off, nothing is kept.
    host_memory::set_capacity(0);
    drop(vec![0u8; n]);
    assert_eq!(host_memory::stats().0, 0);
}
