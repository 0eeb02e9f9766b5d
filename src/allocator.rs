//! The global allocator: mimalloc, called the way its fast paths expect.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`, even at the default
//! alignment. In mimalloc 3 that call is fast only when a free block of at most 1 KiB is at hand;
//! otherwise, unless the size is a power of two, it over-allocates and aligns by hand. Under load
//! that was about twelve calls per relayed request (callgrind:
//! `mi_theap_malloc_zero_aligned_at_overalloc`). `mi_malloc` already returns 16-byte-aligned
//! blocks, so only stricter alignments need the aligned calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every `mi_malloc` block has (`MI_MAX_ALIGN_SIZE`).
const MALLOC_ALIGNMENT: usize = 16;

/// mimalloc, with plain calls for allocations that need no more than its natural alignment.
pub struct MiMalloc;

fn natural(layout: Layout) -> bool {
    layout.align() <= MALLOC_ALIGNMENT && layout.align() <= layout.size()
}

// SAFETY: every block comes from mimalloc and goes back to `mi_free`, which accepts blocks from
// both the plain and the aligned calls; blocks keep at least the alignment their layout asks for.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if natural(layout) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if natural(layout) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGNMENT && layout.align() <= new_size {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_have_the_alignment_their_layout_asks_for() {
        let sizes = [1, 7, 16, 24, 100, 1000, 1025, 5000, 70_000, 3 << 20];
        let alignments = [1, 8, 16, 32, 64, 128, 4096];
        for &size in &sizes {
            for &align in &alignments {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block is written within its size and freed once.
                unsafe {
                    let block = MiMalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "alloc size {size} align {align}");
                    block.write_bytes(0xab, size);
                    let zeroed = MiMalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "alloc_zeroed size {size} align {align}");
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&b| b == 0));
                    let grown = MiMalloc.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "realloc size {size} align {align}");
                    assert!(std::slice::from_raw_parts(grown, size).iter().all(|&b| b == 0xab));
                    MiMalloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    MiMalloc.dealloc(zeroed, layout);
                }
            }
        }
    }
}
