//! Wake-ups a connection's task raises on itself, for work the same poll has already done.
//!
//! hyper hands each body chunk from the connection to the reader over a channel, and the reader
//! taking a chunk wakes the connection so that it may send the next. On an HTTP/1 connection
//! hyper serves (one the relay's own loop, `server/h1.rs`, handed over), the relay polls hyper's
//! connection and the service in one task, so each of those wake-ups is the task waking itself:
//! it is polled once more, through the whole stack, after a poll that already moved everything
//! it could. When the upstream connection was hyper's too, a non-streamed request cost
//! four polls, two of them for nothing, and a streamed one paid one per chunk; the request body's
//! read is where such wake-ups remain.
//!
//! [`Gated`] wraps the connection's future and gives it a waker of its own. Code that reads a
//! body runs the read inside [`hold`], which keeps back the wake-ups the task raises on itself
//! during that read and then decides: if the read says they still matter (it is pending, so
//! progress depends on someone being polled again) they go through; if the read completed,
//! whoever is waiting on the read will poll again before needing anything, or the body is over
//! and its sender has gone, so they are dropped.
//!
//! Everything else is untouched: wake-ups from other tasks or threads, from the I/O driver and
//! from timers, and any wake-up raised outside a `hold`, reach the task as before. Outside a
//! [`Gated`] task (tests, HTTP/2 streams, which hyper runs in tasks of their own) `hold` only
//! runs the read.
//!
//! The gate also counts the wake-ups it passes on ([`wake_count`]). A read that said `Pending`,
//! with the count unmoved since, has nothing new to say: a relayed stream skips polling its
//! upstream when hyper asks for the next frame right after taking one.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

thread_local! {
    /// The gate of the task being polled on this thread, if it is a [`Gated`] one.
    static POLLING: Cell<Option<Arc<Gate>>> = const { Cell::new(None) };
    /// Inside a [`hold`] on this thread.
    static HOLDING: Cell<bool> = const { Cell::new(false) };
    /// A wake-up of the polling task was kept back by the innermost [`hold`].
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// The waker a [`Gated`] future hands to what it polls.
struct Gate {
    task: AtomicWaker,
    /// Tells gates apart for [`WakeCount`], where an address could be reused.
    id: u64,
    /// Wake-ups passed on to the task so far.
    wakes: AtomicU64,
}

impl Gate {
    fn new() -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Gate { task: AtomicWaker::new(), id: NEXT_ID.fetch_add(1, Ordering::Relaxed), wakes: AtomicU64::new(0) }
    }
}

/// Looks at the gate of the task being polled on this thread, leaving it in place.
fn with_polling<R>(look: impl FnOnce(Option<&Arc<Gate>>) -> R) -> R {
    POLLING.with(|polling| {
        let current = polling.take();
        let seen = look(current.as_ref());
        polling.set(current);
        seen
    })
}

impl Gate {
    fn is_polling(self: &Arc<Self>) -> bool {
        with_polling(|current| current.is_some_and(|gate| Arc::ptr_eq(gate, self)))
    }
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if HOLDING.get() && self.is_polling() {
            HELD.set(true);
        } else {
            self.wakes.fetch_add(1, Ordering::Release);
            self.task.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// A task's top-level future whose self-raised wake-ups [`hold`] may keep back.
    pub struct Gated<F> {
        #[pin]
        inner: F,
        gate: Arc<Gate>,
        waker: Waker,
    }
}

impl<F> Gated<F> {
    pub fn new(inner: F) -> Self {
        let gate = Arc::new(Gate::new());
        let waker = Waker::from(Arc::clone(&gate));
        Gated { inner, gate, waker }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.gate.task.register(cx.waker());
        let _polling = Polling(POLLING.replace(Some(Arc::clone(this.gate))));
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

/// Which [`Gated`] task a waker belongs to and how many wake-ups had reached it when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeCount {
    gate: u64,
    wakes: u64,
}

/// The wake-up count of the task being polled on this thread, when it is a [`Gated`] task and
/// `waker` is the one it handed down. If the count read just before a read said `Pending` is
/// still the count, nothing that read waits for has happened: polling it again would only say
/// `Pending` again. `None` elsewhere, where nothing can be told.
pub fn wake_count(waker: &Waker) -> Option<WakeCount> {
    with_polling(|current| {
        let gate = current.filter(|gate| std::ptr::eq(waker.data(), Arc::as_ptr(gate).cast()))?;
        Some(WakeCount { gate: gate.id, wakes: gate.wakes.load(Ordering::Acquire) })
    })
}

/// Puts back the task that was being polled on this thread before, even if the poll panicked:
/// the runtime goes on polling other tasks on the same thread.
struct Polling(Option<Arc<Gate>>);

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.set(self.0.take());
    }
}

/// Runs `read`, keeping back the wake-ups the polling task raises on itself meanwhile. `read`
/// returns its result and whether those wake-ups still matter; they are passed on only if so.
pub fn hold<T>(read: impl FnOnce() -> (T, bool)) -> T {
    let mut window = Window { outer_holding: HOLDING.replace(true), outer_held: HELD.replace(false), pass_on: true };
    let (result, still_needed) = read();
    window.pass_on = still_needed;
    result
}

/// One `hold`'s window. Closing it (also when `read` panicked, which passes everything on)
/// restores the enclosing window's state, then passes on what it held if that is still needed.
struct Window {
    outer_holding: bool,
    outer_held: bool,
    pass_on: bool,
}

impl Drop for Window {
    fn drop(&mut self) {
        HOLDING.set(self.outer_holding);
        let held = HELD.replace(self.outer_held);
        if held && self.pass_on {
            let gate = with_polling(|current| current.cloned());
            // Through the gate, so that an enclosing `hold` decides in turn.
            if let Some(gate) = gate {
                gate.wake_by_ref();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts the wake-ups that reach the executor.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls `body` once inside a `Gated` task; returns how many wake-ups reached the executor.
    fn wakes_reaching_the_task(body: impl FnMut(&mut Context<'_>)) -> usize {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut body = body;
        let mut gated = std::pin::pin!(Gated::new(std::future::poll_fn(move |cx| {
            body(cx);
            Poll::<()>::Pending
        })));
        assert!(gated.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        counter.0.load(Ordering::SeqCst)
    }

    /// Polls a `Gated` task once with `outer`; returns the waker it handed to what it polls.
    fn gated_waker(outer: &Waker) -> Waker {
        let mut handed = None;
        let mut gated = std::pin::pin!(Gated::new(std::future::poll_fn(|cx| {
            handed = Some(cx.waker().clone());
            Poll::<()>::Pending
        })));
        assert!(gated.as_mut().poll(&mut Context::from_waker(outer)).is_pending());
        handed.expect("the task was polled")
    }

    #[test]
    fn a_self_wake_inside_a_completed_read_is_dropped() {
        let wakes = wakes_reaching_the_task(|cx| {
            hold(|| {
                cx.waker().wake_by_ref();
                ((), false)
            })
        });
        assert_eq!(wakes, 0);
    }

    #[test]
    fn a_self_wake_the_read_still_needs_goes_through_once() {
        let wakes = wakes_reaching_the_task(|cx| {
            let stored = cx.waker().clone();
            hold(|| {
                cx.waker().wake_by_ref();
                stored.wake();
                ((), true)
            })
        });
        assert_eq!(wakes, 1);
    }

    #[test]
    fn wakes_outside_a_hold_are_never_held() {
        let wakes = wakes_reaching_the_task(|cx| {
            hold(|| ((), false));
            cx.waker().wake_by_ref();
        });
        assert_eq!(wakes, 1);
    }

    #[test]
    fn a_wake_from_another_thread_during_a_hold_goes_through() {
        let wakes = wakes_reaching_the_task(|cx| {
            let waker = cx.waker().clone();
            hold(|| {
                std::thread::scope(|scope| {
                    scope.spawn(move || waker.wake());
                });
                ((), false)
            })
        });
        assert_eq!(wakes, 1);
    }

    #[test]
    fn another_tasks_wake_during_a_hold_goes_through() {
        let other = Arc::new(Counter::default());
        let other_gate_waker = gated_waker(&Waker::from(Arc::clone(&other)));

        let ours = wakes_reaching_the_task(|_| {
            hold(|| {
                other_gate_waker.wake_by_ref();
                ((), false)
            })
        });
        assert_eq!(ours, 0);
        assert_eq!(other.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn an_enclosing_hold_decides_about_what_an_inner_one_passes_on() {
        // (inner still needs its wake-ups, outer still needs them, wake-ups reaching the task)
        for (inner, outer, expected) in [(true, false, 0), (true, true, 1), (false, true, 0)] {
            let wakes = wakes_reaching_the_task(|cx| {
                hold(|| {
                    hold(|| {
                        cx.waker().wake_by_ref();
                        ((), inner)
                    });
                    ((), outer)
                })
            });
            assert_eq!(wakes, expected, "inner {inner}, outer {outer}");
        }
    }

    #[test]
    fn a_read_that_panics_passes_on_what_it_held_and_leaves_nothing_held() {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut gated = std::pin::pin!(Gated::new(std::future::poll_fn(|cx| {
            hold(|| -> (Poll<()>, bool) {
                cx.waker().wake_by_ref();
                panic!("a bug inside a body read")
            })
        })));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            gated.as_mut().poll(&mut Context::from_waker(&waker))
        }));
        assert!(unwound.is_err());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(!HOLDING.get() && !HELD.get());
        assert!(with_polling(|current| current.is_none()));
        // The next task on this thread is not held back by what the panic left behind.
        let wakes = wakes_reaching_the_task(|cx| cx.waker().wake_by_ref());
        assert_eq!(wakes, 1);
    }

    #[test]
    fn outside_a_gated_task_hold_only_runs_the_read() {
        let counter = Arc::new(Counter::default());
        let waker = Waker::from(Arc::clone(&counter));
        let value = hold(|| {
            waker.wake_by_ref();
            (7, false)
        });
        assert_eq!(value, 7);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_wake_after_the_poll_reaches_the_task() {
        let counter = Arc::new(Counter::default());
        let kept = gated_waker(&Waker::from(Arc::clone(&counter)));
        hold(|| {
            kept.wake();
            ((), false)
        });
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_wake_count_moves_with_wakes_that_reach_the_task_and_only_for_its_own_waker() {
        let mut seen = Vec::new();
        wakes_reaching_the_task(|cx| {
            let own = cx.waker().clone();
            seen.push(wake_count(&own));
            // Held, then dropped with the completed read: the task is not woken.
            hold(|| {
                own.wake_by_ref();
                ((), false)
            });
            seen.push(wake_count(&own));
            own.wake_by_ref();
            seen.push(wake_count(&own));
            seen.push(wake_count(Waker::noop()));
        });
        let counts: Vec<Option<u64>> = seen.iter().map(|count| count.map(|c| c.wakes)).collect();
        assert_eq!(counts, [Some(0), Some(0), Some(1), None]);
        assert_eq!(wake_count(Waker::noop()), None, "outside a Gated task nothing can be told");
    }

    #[test]
    fn two_tasks_never_share_a_wake_count() {
        let mut first = None;
        let mut second = None;
        wakes_reaching_the_task(|cx| first = wake_count(cx.waker()));
        wakes_reaching_the_task(|cx| second = wake_count(cx.waker()));
        assert!(first.is_some() && second.is_some());
        assert_ne!(first, second);
    }
}
