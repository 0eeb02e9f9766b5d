//! The body of a relayed stream: upstream reads go through the dialect's stream translator and
//! out to the client as they arrive, never buffered beyond one event.
//!
//! The body owns the stream-phase timeouts (idle gap, total deadline) and the keep-alive
//! comments that stop proxies from cutting a long silence. A failure after the stream started
//! ends it with an in-band `data: {"error": ...}` event and no `[DONE]`, so SDKs raise instead of
//! returning a truncated answer as complete.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use tokio::time::{Instant, Sleep};

use super::UpstreamBody;
use crate::config::Redactor;
use crate::dialect::StreamTranslator;
use crate::error::{BoxError, ErrorCode, RelayError};
use crate::record::RequestRecord;
use crate::sse;
use crate::wake::{self, WakeCount};

/// Events already read are joined into one write up to this size.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Stream timing, resolved for one request.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    /// When the first data event must have arrived.
    pub first_event_deadline: Instant,
    /// Longest gap between upstream reads once the stream flows.
    pub idle: Duration,
    /// End of the whole request.
    pub deadline: Instant,
    /// Silence after which a keep-alive comment is sent to the client; zero sends none.
    pub keepalive: Duration,
}

/// A relayed stream, usable as a response body.
pub struct RelayStream {
    upstream: UpstreamBody,
    translator: Box<dyn StreamTranslator>,
    /// Client events ready to send; the translator appends to it and a frame takes it all.
    queue: Vec<Bytes>,
    /// The bytes in `queue`, against [`COALESCE_LIMIT`].
    queued_bytes: usize,
    timing: StreamTiming,
    /// One timer for every limit (first event or idle gap, keep-alive, total deadline), armed
    /// at or before the earliest and moved on when it fires early: a chunk only records the
    /// clock. Polling three timers each time the upstream had nothing more cost more than the
    /// rest of the wait (callgrind, chunks arriving 2 ms apart).
    timer: Pin<Box<Sleep>>,
    last_data: Instant,
    /// When events or a keep-alive were last queued for the client.
    last_sent: Instant,
    upstream_done: bool,
    /// A failure seen after events that are still to be sent; reported once they are.
    failed: Option<RelayError>,
    /// `[DONE]` was queued for the client: the answer is whole, and what the upstream does after
    /// it (a connection that drops before its framing ends, say) ends the stream, not fails it.
    answered: bool,
    finished: bool,
    flowing: bool,
    /// The upstream connection runs in a task of its own and hands chunks over one at a time
    /// (hyper-util's client), rather than being driven by this body's reads (see `poll_fill`).
    handed_over: bool,
    /// Data arrived since the body last gave the upstream connection a turn (see `poll_fill`).
    read_since_yield: bool,
    /// The task's wake-up count (see [`wake::wake_count`]) just before the upstream last said
    /// `Pending`; `None` once it said anything else, or where wake-ups cannot be counted.
    upstream_pending_at: Option<WakeCount>,
    record: Arc<RequestRecord>,
    upstream_name: Arc<str>,
    /// Scrubs the upstream's secrets from an error it reports mid-stream.
    redactor: Option<Arc<Redactor>>,
    opened: Instant,
}

impl RelayStream {
    /// Wraps an upstream body whose response headers just arrived; `handed_over` says whether
    /// its connection runs in a task of its own.
    pub fn new(
        upstream: UpstreamBody,
        handed_over: bool,
        translator: Box<dyn StreamTranslator>,
        timing: StreamTiming,
        record: Arc<RequestRecord>,
        upstream_name: Arc<str>,
    ) -> Self {
        record.metrics().streams_active.inc();
        let now = Instant::now();
        RelayStream {
            upstream,
            translator,
            queue: Vec::with_capacity(crate::dialect::framed::READ_EVENTS),
            queued_bytes: 0,
            timer: Box::pin(tokio::time::sleep_until(timing.first_event_deadline.min(timing.deadline))),
            last_data: now,
            last_sent: now,
            timing,
            upstream_done: false,
            failed: None,
            answered: false,
            finished: false,
            flowing: false,
            handed_over,
            read_since_yield: false,
            upstream_pending_at: None,
            record,
            upstream_name,
            redactor: None,
            opened: now,
        }
    }

    /// Scrubs `redactor`'s secrets from the errors this stream reports.
    pub fn redacting(mut self, redactor: Arc<Redactor>) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// Reads until the first event is ready to send. Until then nothing has reached the client,
    /// so a failure here can still be retried or failed over invisibly.
    pub async fn wait_first_event(&mut self) -> Result<(), RelayError> {
        match poll_fn(|cx| self.poll_fill(cx)).await {
            Some(Ok(())) => Ok(()),
            // A 2xx that is not a stream at all (an HTML page, a 204) is a bad answer, which
            // counts against the upstream's health and may fail over; it is not a stream cut short.
            None => Err(no_stream_events("the body ended")),
            Some(Err(error)) if error.code == ErrorCode::UpstreamStreamTruncated => {
                Err(no_stream_events(&error.message))
            }
            Some(Err(error)) => Err(error),
        }
    }

    fn timeout(&self, code: ErrorCode, after: Duration) -> RelayError {
        let what = match code {
            ErrorCode::UpstreamTimeoutIdle => "no data from the upstream",
            ErrorCode::UpstreamTimeoutTotal => "the request's total time limit reached",
            _ => "no first event from the upstream",
        };
        RelayError::new(code, format!("{what} after {after:?}"))
    }

    fn total_timeout(&self) -> RelayError {
        let total = self.timing.deadline.duration_since(self.record_started());
        self.timeout(ErrorCode::UpstreamTimeoutTotal, total)
    }

    /// Fills the queue with everything the upstream has already delivered (up to
    /// [`COALESCE_LIMIT`]): `Some(Ok)` when events are ready, `None` at the clean end. Events that
    /// arrived together leave together, in one write; nothing waits for data not yet arrived.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(), RelayError>>> {
        let ready = |queue: &Vec<Bytes>| if queue.is_empty() { None } else { Some(Poll::Ready(Some(Ok(())))) };
        loop {
            if self.answered && self.failed.take().is_some() {
                self.upstream_done = true;
            }
            if let Some(error) = self.queue.is_empty().then(|| self.failed.take()).flatten() {
                return Poll::Ready(Some(Err(error)));
            }
            if self.failed.is_some() || self.queued_bytes >= COALESCE_LIMIT {
                return Poll::Ready(Some(Ok(())));
            }
            if self.upstream_done {
                return ready(&self.queue).unwrap_or(Poll::Ready(None));
            }
            match self.poll_upstream(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    self.last_data = Instant::now();
                    // The total deadline is checked against the clock read for the chunk; the
                    // timer is polled only before waiting: a timer poll per chunk cost about 120
                    // instructions.
                    if self.last_data >= self.timing.deadline {
                        self.failed = Some(self.total_timeout());
                        continue;
                    }
                    self.read_since_yield = true;
                    let before = self.queue.len();
                    if let Err(error) = self.translator.feed(data, &mut self.queue) {
                        self.failed = Some(error);
                    }
                    self.count_queued(before);
                }
                Poll::Ready(Some(Err(error))) => {
                    let message = format!("the upstream connection failed mid-stream: {error}");
                    self.failed = Some(RelayError::new(ErrorCode::UpstreamReset, message));
                }
                Poll::Ready(None) => {
                    self.upstream_done = true;
                    self.record.add_upstream_wait(self.opened.elapsed());
                    let before = self.queue.len();
                    if let Err(error) = self.translator.finish(&mut self.queue) {
                        self.failed = Some(error);
                    }
                    self.count_queued(before);
                    if let Some(usage) = self.translator.usage() {
                        self.record.set_usage(usage);
                    }
                }
                Poll::Pending => {
                    if self.handed_over && self.read_since_yield && !self.queue.is_empty() {
                        // On hyper-util's client (https upstreams) the connection runs in its
                        // own task and hands over one chunk at a time, so `Pending` here often
                        // means "the next chunk of the same read is not handed over yet", not
                        // "nothing more arrived". One turn of the scheduler lets it catch up;
                        // only a turn that brings nothing flushes. A connection this body drives
                        // itself (plain-http upstreams) has decoded all it read before saying
                        // `Pending`, and that extra turn would only cost a poll of the whole
                        // stack per chunk.
                        self.read_since_yield = false;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if let Some(ready) = ready(&self.queue) {
                        return ready;
                    }
                    while self.timer.as_mut().poll(cx).is_ready() {
                        let now = Instant::now();
                        if now >= self.timing.deadline {
                            self.failed = Some(self.total_timeout());
                            break;
                        }
                        if !self.flowing && now >= self.timing.first_event_deadline {
                            let waited = self.timing.first_event_deadline.duration_since(self.record_started());
                            self.failed = Some(self.timeout(ErrorCode::UpstreamTimeoutFirstByte, waited));
                            break;
                        }
                        if self.flowing && now >= self.last_data + self.timing.idle {
                            self.failed = Some(self.timeout(ErrorCode::UpstreamTimeoutIdle, self.timing.idle));
                            break;
                        }
                        if self.keepalive_due().is_some_and(|due| now >= due) {
                            let comment = sse::comment("keep-alive");
                            self.queued_bytes += comment.len();
                            self.queue.push(comment);
                            self.last_sent = now;
                            self.rearm();
                            return Poll::Ready(Some(Ok(())));
                        }
                        self.rearm();
                    }
                    if self.failed.is_some() {
                        continue;
                    }
                    if self.record.cut_off(cx) {
                        return Poll::Ready(Some(Err(RelayError::new(
                            ErrorCode::ShuttingDown,
                            "the relay is shutting down, and its drain period ended before the stream did",
                        ))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// The upstream's next frame. After the frame a client write follows, hyper polls the body
    /// again at once; when nothing has woken the task since the upstream said `Pending`, that
    /// poll would only take the upstream body through a read that finds nothing, so it is
    /// answered without one.
    fn poll_upstream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let wakes = wake::wake_count(cx.waker());
        if wakes.is_some() && wakes == self.upstream_pending_at {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut self.upstream).poll_frame(cx);
        self.upstream_pending_at = if polled.is_pending() { wakes } else { None };
        polled
    }

    /// When a keep-alive comment is next due: only once the stream flows (the client has its
    /// headers), and never with a zero interval.
    fn keepalive_due(&self) -> Option<Instant> {
        (self.flowing && !self.timing.keepalive.is_zero()).then(|| self.last_sent + self.timing.keepalive)
    }

    fn rearm(&mut self) {
        let due = self.next_due();
        self.timer.as_mut().reset(due);
    }

    /// The earliest limit: the first event's deadline or the idle gap's end, a keep-alive, the
    /// total deadline.
    fn next_due(&self) -> Instant {
        let wait_limit =
            if self.flowing { self.last_data + self.timing.idle } else { self.timing.first_event_deadline };
        let due = wait_limit.min(self.timing.deadline);
        self.keepalive_due().map_or(due, |keepalive| keepalive.min(due))
    }

    fn record_started(&self) -> Instant {
        Instant::from_std(self.record.started())
    }

    /// Accounts for the events the translator queued from index `from` on.
    fn count_queued(&mut self, from: usize) {
        let added = &self.queue[from..];
        if added.is_empty() {
            return;
        }
        self.answered |= added.last().is_some_and(|event| sse::is_done_event(event));
        self.queued_bytes += added.iter().map(Bytes::len).sum::<usize>();
        self.last_sent = self.last_data;
        if !self.flowing {
            self.flowing = true;
            self.record.mark_first_token();
            // The limits change from the first event's deadline to the idle gap and the
            // keep-alive, either of which may come sooner.
            self.rearm();
        }
    }

    /// Everything ready to send, as one frame: events that arrived in one read leave in one
    /// write instead of one write (and one chunk header) each.
    fn take_queued(&mut self) -> Option<Bytes> {
        let total = std::mem::take(&mut self.queued_bytes);
        if self.queue.len() <= 1 {
            return self.queue.pop();
        }
        let mut joined = bytes::BytesMut::with_capacity(total);
        for event in self.queue.drain(..) {
            joined.extend_from_slice(&event);
        }
        Some(joined.freeze())
    }

    fn fail(&mut self, error: RelayError) -> Bytes {
        self.finished = true;
        let mut error = error.with_upstream(self.upstream_name.as_ref());
        if let Some(redactor) = &self.redactor {
            error = error.redacted(redactor);
        }
        tracing::warn!(
            request_id = self.record.request_id(),
            upstream = %self.upstream_name,
            code = error.code.as_str(),
            "stream failed after it started: {}", error.message
        );
        if let Some(kind) = error.code.timeout_kind() {
            self.record.metrics().upstream_timeouts.with_label_values(&[&self.upstream_name, kind]).inc();
        }
        self.record.set_error(error.code);
        if let Some(usage) = self.translator.usage() {
            self.record.set_usage(usage);
        }
        sse::data_event(error.to_json(self.record.request_id()).to_string().as_bytes())
    }
}

/// A stream read to its end and accumulated into one `chat.completion`.
pub struct Aggregated {
    pub body: Bytes,
    pub usage: Option<crate::dialect::Usage>,
}

/// A 2xx answer to a stream request that holds no stream at all (an HTML page, a 204).
fn no_stream_events(why: &str) -> RelayError {
    RelayError::new(
        ErrorCode::UpstreamInvalidResponse,
        format!("the upstream answered a stream request with no stream events: {why}"),
    )
}

/// Reads a whole upstream stream through its translator and accumulates the client events into
/// one `chat.completion`, as an SDK would. Nothing has reached the client yet, so a failure here
/// is an ordinary (retryable) error.
pub async fn aggregate(
    mut upstream: UpstreamBody,
    mut translator: Box<dyn StreamTranslator>,
    first_event_deadline: Instant,
    idle: Duration,
    deadline: Instant,
) -> Result<Aggregated, RelayError> {
    use http_body_util::BodyExt;

    let mut accumulator = crate::dialect::simulate::ChunkAccumulator::default();
    let mut events = Vec::new();
    let mut next_deadline = first_event_deadline.min(deadline);
    loop {
        let frame = match tokio::time::timeout_at(next_deadline, upstream.frame()).await {
            Err(_) if next_deadline >= deadline => {
                return Err(RelayError::new(ErrorCode::UpstreamTimeoutTotal, "the request's total time limit reached"))
            }
            Err(_) if accumulator.is_empty() => {
                return Err(RelayError::new(ErrorCode::UpstreamTimeoutFirstByte, "no first event from the upstream"))
            }
            Err(_) => {
                return Err(RelayError::new(
                    ErrorCode::UpstreamTimeoutIdle,
                    format!("no data from the upstream for {idle:?}"),
                ))
            }
            Ok(frame) => frame,
        };
        match frame {
            None => break,
            Some(Err(error)) => {
                return Err(RelayError::new(
                    ErrorCode::UpstreamReset,
                    format!("the upstream connection failed mid-stream: {error}"),
                ))
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else { continue };
                translator.feed(data, &mut events)?;
                for event in events.drain(..) {
                    accumulator.push(event_payload(&event));
                }
                next_deadline = (Instant::now() + idle).min(deadline);
            }
        }
    }
    translator.finish(&mut events).map_err(|error| match error.code {
        // As for a streamed client (`RelayStream::wait_first_event`): a bad answer, which fails over.
        ErrorCode::UpstreamStreamTruncated if accumulator.is_empty() => no_stream_events(&error.message),
        _ => error,
    })?;
    for event in events.drain(..) {
        accumulator.push(event_payload(&event));
    }
    Ok(Aggregated { body: accumulator.finish(), usage: translator.usage() })
}

/// The payload of one `data: ...\n\n` event written by a translator.
fn event_payload(event: &Bytes) -> &[u8] {
    let payload = event.strip_prefix(b"data: ").unwrap_or(event);
    payload.trim_ascii_end()
}

impl Drop for RelayStream {
    fn drop(&mut self) {
        self.record.metrics().streams_active.dec();
    }
}

impl HttpBody for RelayStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        match this.poll_fill(cx) {
            Poll::Ready(Some(Ok(()))) => Poll::Ready(this.take_queued().map(|events| Ok(Frame::data(events)))),
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.queue.clear();
                this.queued_bytes = 0;
                Poll::Ready(Some(Ok(Frame::data(this.fail(error)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;
    use crate::dialect::{self, DialectKind, DialectOptions, ResponseContext};
    use crate::error::BoxError;
    use crate::metrics::Metrics;

    const EVENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn relay(upstream: UpstreamBody, deadline: Instant) -> RelayStream {
        let timing = StreamTiming {
            first_event_deadline: Instant::now() + Duration::from_secs(60),
            idle: Duration::from_secs(60),
            deadline,
            keepalive: Duration::from_secs(60),
        };
        relay_timed(upstream, timing)
    }

    fn relay_timed(upstream: UpstreamBody, timing: StreamTiming) -> RelayStream {
        let ctx = ResponseContext {
            request_id: "req_t",
            created: 1,
            upstream_model: "m",
            client_wants_usage: false,
            several_choices: false,
        };
        let translator =
            dialect::build(DialectKind::OpenAiCompletions, &DialectOptions::default()).stream_translator(&ctx);
        let record = RequestRecord::start(
            Arc::new(Metrics::new()),
            Default::default(),
            "req_t".into(),
            http::Method::POST,
            http::Version::HTTP_11,
            "/v1/chat",
        );
        RelayStream::new(upstream, false, translator, timing, record, Arc::from("up"))
    }

    /// An upstream that sends each event after its gap.
    fn dripping(events: Vec<(u64, &'static str)>) -> UpstreamBody {
        let frames = futures_util::stream::iter(events).then(|(gap_ms, event)| async move {
            tokio::time::sleep(Duration::from_millis(gap_ms)).await;
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(event.as_bytes())))
        });
        StreamBody::new(frames).boxed_unsync()
    }

    fn timing(first_event_ms: u64, idle_ms: u64, keepalive_ms: u64) -> StreamTiming {
        let now = Instant::now();
        StreamTiming {
            first_event_deadline: now + Duration::from_millis(first_event_ms),
            idle: Duration::from_millis(idle_ms),
            deadline: now + Duration::from_secs(3600),
            keepalive: Duration::from_millis(keepalive_ms),
        }
    }

    /// Everything the client receives, after the first event was waited for.
    async fn received(mut stream: RelayStream) -> Vec<String> {
        stream.wait_first_event().await.unwrap();
        let mut frames = Vec::new();
        while let Some(frame) = stream.frame().await {
            frames.push(String::from_utf8(frame.unwrap().into_data().unwrap().to_vec()).unwrap());
        }
        frames
    }

    fn keepalives(frames: &[String]) -> usize {
        frames.iter().filter(|frame| frame.as_str() == ": keep-alive\n\n").count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silence_is_filled_with_a_keepalive_per_interval() {
        let upstream = dripping(vec![(0, EVENT), (350, DONE)]);
        let frames = received(relay_timed(upstream, timing(1_000, 1_000, 100))).await;
        assert_eq!(keepalives(&frames), 3, "{frames:?}");
        assert_eq!(frames.first().map(String::as_str), Some(EVENT));
        assert_eq!(frames.last().map(String::as_str), Some(DONE));
    }

    #[tokio::test(start_paused = true)]
    async fn what_the_upstream_does_after_done_cannot_fail_a_whole_answer() {
        let failing_after_done = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(EVENT.as_bytes()))),
            Ok(Frame::data(Bytes::from_static(b"data:[DONE]\r\n\r\n"))),
            Err::<Frame<Bytes>, BoxError>("connection reset".into()),
        ]);
        let frames = received(relay(
            StreamBody::new(failing_after_done).boxed_unsync(),
            Instant::now() + Duration::from_secs(60),
        ))
        .await;
        assert_eq!(frames.concat(), format!("{EVENT}data:[DONE]\r\n\r\n"));
        // An upstream that keeps its connection open after [DONE] until the idle limit.
        let silent_after_done = dripping(vec![(0, EVENT), (0, DONE), (10_000, EVENT)]);
        let frames = received(relay_timed(silent_after_done, timing(1_000, 250, 0))).await;
        assert_eq!(frames.concat(), format!("{EVENT}{DONE}"));
        // Before [DONE], the same failure is the client's to see.
        let failing = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(EVENT.as_bytes()))),
            Err::<Frame<Bytes>, BoxError>("connection reset".into()),
        ]);
        let frames =
            received(relay(StreamBody::new(failing).boxed_unsync(), Instant::now() + Duration::from_secs(60))).await;
        assert!(frames.last().unwrap().contains("upstream_reset"), "{frames:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_keepalive_interval_sends_none() {
        let upstream = dripping(vec![(0, EVENT), (350, DONE)]);
        let frames = received(relay_timed(upstream, timing(1_000, 1_000, 0))).await;
        assert_eq!(frames, [EVENT, DONE]);
    }

    #[tokio::test(start_paused = true)]
    async fn keepalives_do_not_hold_off_the_idle_timeout() {
        let upstream = dripping(vec![(0, EVENT), (10_000, DONE)]);
        let frames = received(relay_timed(upstream, timing(1_000, 250, 100))).await;
        assert_eq!(keepalives(&frames), 2, "{frames:?}");
        let last = frames.last().unwrap();
        assert!(last.contains("upstream_timeout_idle") && !frames.iter().any(|f| f == DONE), "{frames:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_keepalive_is_sent_before_the_first_event() {
        let upstream = dripping(vec![(500, EVENT), (100, DONE)]);
        let frames = received(relay_timed(upstream, timing(1_000, 5_000, 80))).await;
        assert_eq!(frames.first().map(String::as_str), Some(EVENT), "{frames:?}");
        assert_eq!(keepalives(&frames), 1, "{frames:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_event_deadline_holds_whatever_the_keepalive_interval() {
        let upstream = dripping(vec![(1_000, EVENT), (0, DONE)]);
        let mut stream = relay_timed(upstream, timing(200, 5_000, 50));
        let error = stream.wait_first_event().await.unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamTimeoutFirstByte);
    }

    /// Counts the upstream body's polls.
    struct Counted {
        inner: UpstreamBody,
        polls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl HttpBody for Counted {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_frame(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_gated_task_a_poll_right_after_a_frame_does_not_read_the_upstream_again() {
        let events = vec![(0, EVENT), (10, EVENT), (10, EVENT), (10, EVENT), (10, DONE)];
        let run = |gated: bool| {
            let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let upstream = Counted { inner: dripping(events.clone()), polls: Arc::clone(&polls) }.boxed_unsync();
            let stream = relay_timed(upstream, timing(1_000, 1_000, 0));
            async move {
                let frames =
                    if gated { crate::wake::Gated::new(received(stream)).await } else { received(stream).await };
                (frames, polls.load(std::sync::atomic::Ordering::SeqCst))
            }
        };
        let (frames, plain_polls) = tokio::time::timeout(Duration::from_secs(5), run(false)).await.unwrap();
        let (gated_frames, gated_polls) = tokio::time::timeout(Duration::from_secs(5), run(true)).await.unwrap();
        assert_eq!(frames, [EVENT, EVENT, EVENT, EVENT, DONE]);
        assert_eq!(gated_frames, frames);
        // Each event: the read that brings it, and the one that finds nothing more before the
        // frame leaves. Without the count, also the read right after the frame.
        assert!(gated_polls < plain_polls, "{gated_polls} polls in a Gated task, {plain_polls} outside");
        assert!(gated_polls <= 2 * frames.len() + 1, "{gated_polls} polls for {} events", frames.len());
    }

    #[tokio::test]
    async fn events_that_arrived_together_leave_together_up_to_the_coalescing_limit() {
        let event =
            format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{}\"}}}}]}}\n\n", "x".repeat(8000));
        let mut sent = vec![event.clone(); 20];
        sent.push("data: [DONE]\n\n".to_owned());
        let chunks: Vec<Result<_, BoxError>> = sent.iter().map(|e| Ok(Frame::data(Bytes::from(e.clone())))).collect();
        // Every chunk is ready at once, as when one read brought them all.
        let upstream = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
        let mut stream = relay(upstream, Instant::now() + Duration::from_secs(60));
        let mut frames = Vec::new();
        while let Some(frame) = stream.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        let per_frame = COALESCE_LIMIT.div_ceil(event.len());
        let sizes: Vec<usize> = frames.iter().map(Bytes::len).collect();
        assert_eq!(frames.len(), 20_usize.div_ceil(per_frame), "{sizes:?}");
        assert!(frames[..frames.len() - 1].iter().all(|frame| frame.len() == per_frame * event.len()), "{sizes:?}");
        assert_eq!(frames.concat(), sent.concat().into_bytes());
    }

    #[tokio::test]
    async fn chunks_that_arrive_past_the_total_deadline_end_the_stream_with_its_timeout() {
        let chunk = || {
            let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(event)))
        };
        // Every chunk is ready at once, so the upstream body never says `Pending`.
        let upstream = StreamBody::new(futures_util::stream::iter([chunk(), chunk(), chunk()])).boxed_unsync();
        let mut stream = relay(upstream, Instant::now() - Duration::from_millis(5));
        let error = stream.wait_first_event().await.unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamTimeoutTotal);
    }
}
