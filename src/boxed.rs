//! Boxing a request's future without copying it.
//!
//! `Box::pin(future)` builds the future on the stack, then allocates the box and copies the future
//! into it: all of it, as a future is as large as its largest state (a kilobyte or more for a
//! request's), although only what it captured is set before it first runs. Allocating the box
//! first lets the compiler build the future in the box itself (LLVM's call-slot optimisation), so
//! nothing is copied. That is an optimisation, not a guarantee; `bench/callgrind.sh` shows whether
//! it holds (bench/HISTORY.md).

use std::future::Future;
use std::pin::Pin;

/// `make()`'s future, pinned in a box allocated before it is made.
#[inline(always)]
pub fn boxed_in_place<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_boxed_future_runs_with_what_it_captured() {
        let place = String::from("place");
        let said = boxed_in_place(move || async move { format!("in {place}") }).await;
        assert_eq!(said, "in place");
    }
}
