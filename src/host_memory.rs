//! A global allocator that keeps freed large blocks for reuse ([`BlockCache`]).
//!
//! A CPU training step allocates and frees the same large tensors every time: the logits
//! and their gradient, the token-embedding gradient, the optimizer's new values. glibc
//! serves every block above 32 MiB (its largest `M_MMAP_THRESHOLD`) with a fresh `mmap`
//! and returns it with `munmap`, so each step the kernel faulted in and zeroed the same
//! gigabytes again (GPT-2 small at batch 4 × 128: ~520k page faults, ~2 s of system time in
//! a ~10 s step, measured 2026-12-06). [`BlockCache`] keeps such blocks when they are freed
//! and hands one back when a block of exactly the same size is asked for, which is what
//! the next step does.
//!
//! What the cache holds is bounded ([`set_capacity`], off until set) and dropped at the end
//! of each session command ([`trim`]), so memory freed by one `fit` goes back to the system
//! before the next command. The binary installs it; the library only calls [`trim`], which
//! does nothing when no cache is installed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks at least this large go through the cache (glibc's mmap threshold as tunelab's
/// `main` sets it: smaller blocks come from the heap, which already reuses its pages).
pub const MIN_BLOCK: usize = 32 << 20;

/// How many freed blocks the cache holds at most.
const SLOTS: usize = 64;

/// One cached block: where, and the layout it was allocated with.
#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    size: usize,
    align: usize,
    /// When it was cached (a counter), to give back the oldest first.
    age: u64,
}

struct Blocks {
    slots: [Option<Block>; SLOTS],
    clock: u64,
}

static BLOCKS: Mutex<Blocks> = Mutex::new(Blocks { slots: [None; SLOTS], clock: 0 });
/// Bytes the cache may hold (0: the cache is off).
static CAPACITY: AtomicUsize = AtomicUsize::new(0);
/// Bytes the cache holds now.
static HELD: AtomicUsize = AtomicUsize::new(0);
/// Allocations served from the cache.
static HITS: AtomicUsize = AtomicUsize::new(0);
/// Large allocations the cache could not serve.
static MISSES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, with freed blocks of [`MIN_BLOCK`] bytes or more kept for reuse.
/// Install it in a binary with `#[global_allocator]`, then turn it on with
/// [`set_capacity`].
pub struct BlockCache;

/// Lets the cache hold up to `bytes` of freed blocks (0 turns it off and frees what it holds).
pub fn set_capacity(bytes: usize) {
    CAPACITY.store(bytes, Ordering::Relaxed);
    if bytes == 0 {
        trim();
    }
}

/// The default capacity on this machine: an eighth of physical memory, at most 4 GiB.
pub fn default_capacity() -> usize {
    (physical() / 8).min(4 << 30)
}

/// Bytes of physical memory on this machine (8 GiB where the system does not say).
pub fn physical() -> usize {
    // SAFETY: sysconf only reads system constants.
    #[cfg(unix)]
    let total = unsafe {
        libc::sysconf(libc::_SC_PHYS_PAGES).max(0) as usize
            * libc::sysconf(libc::_SC_PAGESIZE).max(0) as usize
    };
    #[cfg(not(unix))]
    let total = 0;
    if total == 0 {
        8 << 30
    } else {
        total
    }
}

/// Gives every cached block back to the system. The session calls it after each command.
pub fn trim() {
    // Taken out under the lock, given back outside it (`release` calls the system allocator).
    let mut freed = [None; SLOTS];
    {
        let Ok(mut b) = BLOCKS.lock() else { return };
        for (slot, out) in b.slots.iter_mut().zip(freed.iter_mut()) {
            *out = slot.take();
        }
    }
    freed.into_iter().flatten().for_each(release);
}

/// Bytes held by the cache now, how many large allocations it has served, and how many it
/// could not.
pub fn stats() -> (usize, usize, usize) {
    (HELD.load(Ordering::Relaxed), HITS.load(Ordering::Relaxed), MISSES.load(Ordering::Relaxed))
}

fn release(block: Block) {
    HELD.fetch_sub(block.size, Ordering::Relaxed);
    // SAFETY: the block came from `System` with exactly this layout and is owned by no one.
    unsafe {
        System.dealloc(block.ptr as *mut u8, Layout::from_size_align_unchecked(block.size, block.align))
    }
}

/// A cached block of exactly `layout`'s size and alignment, taken out of the cache.
fn take(layout: Layout) -> Option<*mut u8> {
    let mut b = BLOCKS.lock().ok()?;
    let slot = b
        .slots
        .iter_mut()
        .find(|s| s.is_some_and(|blk| blk.size == layout.size() && blk.align == layout.align()));
    let Some(slot) = slot else {
        MISSES.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let block = slot.take()?;
    HELD.fetch_sub(block.size, Ordering::Relaxed);
    HITS.fetch_add(1, Ordering::Relaxed);
    Some(block.ptr as *mut u8)
}

/// Keeps a freed block if the capacity allows, giving back the oldest blocks to make room;
/// returns false when the block was not kept (the caller frees it).
fn keep(ptr: *mut u8, layout: Layout) -> bool {
    let capacity = CAPACITY.load(Ordering::Relaxed);
    if layout.size() > capacity {
        return false;
    }
    let mut evicted = [None; SLOTS];
    let kept = {
        let Ok(mut b) = BLOCKS.lock() else { return false };
        let held = |b: &Blocks| b.slots.iter().flatten().map(|blk| blk.size).sum::<usize>();
        while held(&b) + layout.size() > capacity || b.slots.iter().all(Option::is_some) {
            let oldest =
                b.slots.iter_mut().filter(|s| s.is_some()).min_by_key(|s| s.map_or(0, |blk| blk.age));
            let Some(blk) = oldest.and_then(Option::take) else { break };
            if let Some(out) = evicted.iter_mut().find(|e| e.is_none()) {
                *out = Some(blk);
            }
        }
        b.clock += 1;
        let age = b.clock;
        match b.slots.iter_mut().find(|s| s.is_none()) {
            Some(free) => {
                *free = Some(Block { ptr: ptr as usize, size: layout.size(), align: layout.align(), age });
                HELD.fetch_add(layout.size(), Ordering::Relaxed);
                true
            }
            None => false,
        }
    };
    // Outside the lock: `release` calls into the system allocator.
    evicted.into_iter().flatten().for_each(release);
    kept
}

// SAFETY: every block handed out was allocated by `System` with the layout it is used
// with (a cached block is reused only for exactly its own size and alignment), and a block
// is either cached or handed out, never both.
unsafe impl GlobalAlloc for BlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            if let Some(p) = take(layout) {
                return p;
            }
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= MIN_BLOCK {
            if let Some(p) = take(layout) {
                std::ptr::write_bytes(p, 0, layout.size());
                return p;
            }
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= MIN_BLOCK && CAPACITY.load(Ordering::Relaxed) > 0 && keep(ptr, layout) {
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Every block, cached or not, is a `System` block of `layout`.
        System.realloc(ptr, layout, new_size)
    }
}
