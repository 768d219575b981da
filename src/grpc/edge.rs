//! Protections at the edge of every call, in one tower layer, before authentication:
//!
//! - **Load shedding.** At most `max_in_flight` unary calls (health checks aside) and
//!   `max_streams` streaming calls are in progress at once; one more is answered at
//!   once with RESOURCE_EXHAUSTED, reason `OVERLOADED`, and a `google.rpc.RetryInfo`
//!   saying when to try again, instead of queueing without bound. A streaming call
//!   holds its place until it ends; the two limits are apart so that long streams
//!   cannot crowd out short calls.
//! - **Message size and memory.** Each request message is bounded by its method's
//!   limit, and all request messages being received at once by a server-wide budget,
//!   both checked from a message's 5-byte gRPC prefix before its bytes are buffered:
//!   RESOURCE_EXHAUSTED (`MESSAGE_TOO_LARGE`, or `MEMORY_BUDGET` with RetryInfo).
//! - **Deadlines.** A caller's `grpc-timeout` ends the call with DEADLINE_EXCEEDED
//!   (tonic's own timer says CANCELLED, so this one is set to fire just before it).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower::{Layer, Service};

use super::connections::{ActiveCall, ConnectionInfo};
use crate::{
    error::{Error, reason},
    telemetry::metrics::metrics,
};

/// Limits of the edge layer; see `serve --help` for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub max_in_flight: usize,
    pub max_streams: usize,
    /// The largest request message of the batch methods (records and registry entries).
    pub max_batch_message_bytes: usize,
    /// The largest request message of every other method.
    pub max_message_bytes: usize,
    /// Request messages being received, all calls together.
    pub request_memory_bytes: usize,
    /// What RetryInfo tells a shed caller to wait at least (more when many wait).
    pub retry_after: Duration,
}

/// Paths whose messages may be batches: of records, or of up to 1,000 registry
/// entries (a batch of partnerships with the longest names and purposes takes about
/// 21 MB).
fn is_batch_method(path: &str) -> bool {
    matches!(
        path,
        "/partnership.v1.SubmissionService/SubmitRecords"
            | "/partnership.v1.SubmissionService/IngestRecords"
            | "/partnership.v1.RegistryService/BatchCreateAgencies"
            | "/partnership.v1.RegistryService/BatchCreatePartnerships"
            | "/partnership.v1.RegistryService/BatchCreateMemberships"
    )
}

fn is_health(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// Calls that stream: they hold their place for as long as the stream lasts.
fn is_streaming(path: &str) -> bool {
    matches!(
        path,
        "/partnership.v1.SubmissionService/IngestRecords" | "/partnership.v1.ReportService/ExportReports"
    ) || path.starts_with("/grpc.reflection.")
}

/// What the edge layer shares between calls.
#[derive(Debug)]
struct Shared {
    limits: EdgeLimits,
    in_flight: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    memory: Arc<MemoryBudget>,
    shedding: Shedding,
}

/// Sheds keep only this many callers a second coming back: a shed answer costs the
/// server nearly what a cheap call does, so the RetryInfo delay grows with the
/// number of callers waiting to retry (estimated from the shed rate and the delay
/// given) until their retries come at this rate, and falls back to the base delay
/// when the load does.
const SHED_RETRIES_PER_SECOND: f64 = 500.0;
/// The longest RetryInfo delay given.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// How often the delay is re-estimated.
const SHED_WINDOW: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct ShedWindow {
    start: std::time::Instant,
    sheds: u64,
    delay: Duration,
}

/// What shed calls are told, and the answers made for each delay (in 50 ms steps),
/// so that shedding stays cheap when most calls are shed.
#[derive(Debug)]
struct Shedding {
    base: Duration,
    window: std::sync::Mutex<ShedWindow>,
    answers: std::sync::Mutex<std::collections::HashMap<(bool, u64), http::HeaderMap>>,
}

impl Shedding {
    fn new(base: Duration) -> Self {
        Shedding {
            base,
            window: std::sync::Mutex::new(ShedWindow {
                start: std::time::Instant::now(),
                sheds: 0,
                delay: base,
            }),
            answers: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Counts one shed call and says how long it should wait.
    fn delay(&self) -> Duration {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        w.sheds += 1;
        let elapsed = w.start.elapsed();
        if elapsed >= SHED_WINDOW {
            let rate = w.sheds as f64 / elapsed.as_secs_f64();
            // Callers waiting ≈ rate × delay (Little); spread their retries so they
            // come back at SHED_RETRIES_PER_SECOND.
            let waiting = rate * w.delay.as_secs_f64();
            w.delay =
                Duration::from_secs_f64(waiting / SHED_RETRIES_PER_SECOND).clamp(self.base, MAX_RETRY_AFTER);
            w.start = std::time::Instant::now();
            w.sheds = 0;
        }
        w.delay
    }

    fn answer(&self, limits: &EdgeLimits, streaming: bool) -> Response<tonic::body::Body> {
        metrics().shed(if streaming { "streams" } else { "in_flight" });
        let delay = self.delay();
        let step = delay.as_millis().div_ceil(50) as u64 * 50;
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        let headers = answers
            .entry((streaming, step))
            .or_insert_with(|| status_headers(overloaded(limits, streaming, Duration::from_millis(step))));
        let mut response = Response::new(tonic::body::Body::default());
        *response.headers_mut() = headers.clone();
        response
    }
}

/// The headers of a trailers-only answer carrying this error.
fn status_headers(e: Error) -> http::HeaderMap {
    refuse(e).into_parts().0.headers
}

#[derive(Debug, Clone)]
pub struct EdgeLayer {
    shared: Arc<Shared>,
}

impl EdgeLayer {
    pub fn new(limits: EdgeLimits) -> Self {
        EdgeLayer {
            shared: Arc::new(Shared {
                limits,
                in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
                streams: Arc::new(Semaphore::new(limits.max_streams)),
                memory: Arc::new(MemoryBudget::new(limits.request_memory_bytes)),
                shedding: Shedding::new(limits.retry_after),
            }),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner, shared: self.shared.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Edge<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// A status as an HTTP response (trailers-only), with its `ErrorInfo`.
fn refuse(e: Error) -> Response<tonic::body::Body> {
    Status::from(e).into_http()
}

fn overloaded(limits: &EdgeLimits, streaming: bool, retry_after: Duration) -> Error {
    let (what, limit) =
        if streaming { ("streams", limits.max_streams) } else { ("calls", limits.max_in_flight) };
    Error::resource_exhausted(
        reason::OVERLOADED,
        format!("the server is at its limit of {limit} {what} in progress; retry later"),
        Some(retry_after),
    )
    .with_metadata(if streaming { "max_streams" } else { "max_in_flight" }, limit.to_string())
}

/// The `grpc-timeout` of a request: digits (at most 8) and a unit.
pub fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// How much sooner than the caller's deadline this layer answers, so that its
/// DEADLINE_EXCEEDED arrives before tonic's CANCELLED for the same deadline.
fn ahead_of_tonic(deadline: Duration) -> Duration {
    deadline.saturating_sub(Duration::from_millis(1).min(deadline / 10))
}

impl<S> Service<Request<tonic::body::Body>> for Edge<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = EdgeFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let path = req.uri().path();
        let limits = &self.shared.limits;
        let permit = if is_health(path) {
            None
        } else {
            let streaming = is_streaming(path);
            let pool = if streaming { &self.shared.streams } else { &self.shared.in_flight };
            match pool.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    return EdgeFuture::Ready {
                        response: Some(self.shared.shedding.answer(limits, streaming)),
                    };
                }
            }
        };
        let guard = CallGuard {
            _permit: permit,
            _call: ConnectionInfo::of(req.extensions()).map(|c| c.state.begin_call()),
        };
        let max =
            if is_batch_method(path) { limits.max_batch_message_bytes } else { limits.max_message_bytes };
        let deadline = grpc_timeout(req.headers()).map(|d| tokio::time::sleep(ahead_of_tonic(d)));
        let req =
            req.map(|body| tonic::body::Body::new(LimitedBody::new(body, max, self.shared.memory.clone())));
        EdgeFuture::Call {
            inner: self.inner.call(req),
            deadline: deadline.map(Box::pin),
            guard: Some(guard),
            _error: std::marker::PhantomData,
        }
    }
}

pin_project! {
    #[project = EdgeProj]
    pub enum EdgeFuture<F, E> {
        Ready { response: Option<Response<tonic::body::Body>> },
        Call {
            #[pin]
            inner: F,
            deadline: Option<Pin<Box<tokio::time::Sleep>>>,
            guard: Option<CallGuard>,
            _error: std::marker::PhantomData<E>,
        },
    }
}

impl<F, E> Future for EdgeFuture<F, E>
where
    F: Future<Output = Result<Response<tonic::body::Body>, E>>,
{
    type Output = Result<Response<tonic::body::Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EdgeProj::Ready { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            EdgeProj::Call { inner, deadline, guard, .. } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    let guard = guard.take();
                    return Poll::Ready(result.map(|response| {
                        // A streaming answer keeps its place until its body ends.
                        response.map(|b| tonic::body::Body::new(HoldingBody { inner: b, _guard: guard }))
                    }));
                }
                if let Some(d) = deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    guard.take();
                    return Poll::Ready(Ok(refuse(Error::deadline_exceeded())));
                }
                Poll::Pending
            }
        }
    }
}

/// A call's place in the in-flight limit, and its mark on its connection.
#[derive(Debug)]
pub struct CallGuard {
    _permit: Option<OwnedSemaphorePermit>,
    _call: Option<ActiveCall>,
}

pin_project! {
    /// A response body that holds its call's guard until it ends.
    struct HoldingBody {
        #[pin]
        inner: tonic::body::Body,
        _guard: Option<CallGuard>,
    }
}

impl Body for HoldingBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes of request messages being received, server-wide.
#[derive(Debug)]
pub struct MemoryBudget {
    available: AtomicUsize,
    capacity: usize,
}

impl MemoryBudget {
    pub fn new(capacity: usize) -> Self {
        MemoryBudget { available: AtomicUsize::new(capacity), capacity }
    }

    fn reserve(&self, n: usize) -> bool {
        self.available.fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| a.checked_sub(n)).is_ok()
    }

    fn release(&self, n: usize) {
        self.available.fetch_add(n, Ordering::AcqRel);
    }
}

pin_project! {
    /// A request body whose gRPC messages are bounded: each message's length prefix
    /// is checked against the limit and reserved from the memory budget as it
    /// arrives, before the message is buffered; the reservation is returned when the
    /// next message begins or the body ends.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        max: usize,
        budget: Arc<MemoryBudget>,
        header: [u8; 5],
        header_len: usize,
        // Bytes of the current message still to come.
        remaining: usize,
        reserved: usize,
    }

    impl<B> PinnedDrop for LimitedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.budget.release(*this.reserved);
        }
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, max: usize, budget: Arc<MemoryBudget>) -> Self {
        LimitedBody { inner, max, budget, header: [0; 5], header_len: 0, remaining: 0, reserved: 0 }
    }
}

/// Follows the message boundaries through one chunk of the body.
fn track(
    mut data: &[u8],
    header: &mut [u8; 5],
    header_len: &mut usize,
    remaining: &mut usize,
    reserved: &mut usize,
    max: usize,
    budget: &MemoryBudget,
) -> Result<(), Error> {
    while !data.is_empty() {
        if *remaining > 0 {
            let n = (*remaining).min(data.len());
            *remaining -= n;
            data = &data[n..];
            continue;
        }
        let n = (5 - *header_len).min(data.len());
        header[*header_len..*header_len + n].copy_from_slice(&data[..n]);
        *header_len += n;
        data = &data[n..];
        if *header_len < 5 {
            break;
        }
        *header_len = 0;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        // The previous message has been handed on whole.
        budget.release(std::mem::take(reserved));
        if len > max {
            metrics().shed("message_size");
            return Err(Error::resource_exhausted(
                reason::MESSAGE_TOO_LARGE,
                format!("a request message of {len} bytes is larger than this method's limit of {max} bytes"),
                None,
            )
            .with_metadata("max_message_bytes", max.to_string()));
        }
        if !budget.reserve(len) {
            metrics().shed("memory");
            return Err(Error::resource_exhausted(
                reason::MEMORY_BUDGET,
                format!(
                    "the server is receiving as many request bytes as it holds at once ({} bytes); retry later",
                    budget.capacity
                ),
                Some(Duration::from_secs(1)),
            ));
        }
        *reserved = len;
        *remaining = len;
    }
    Ok(())
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match std::task::ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let chunk = data.chunk();
                    if let Err(e) = track(
                        chunk,
                        this.header,
                        this.header_len,
                        this.remaining,
                        this.reserved,
                        *this.max,
                        this.budget,
                    ) {
                        return Poll::Ready(Some(Err(Box::new(Status::from(e)))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => {
                this.budget.release(std::mem::take(this.reserved));
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(len: u32) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    fn run(chunks: &[Vec<u8>], max: usize, budget: &MemoryBudget) -> Result<(usize, usize), Error> {
        let (mut header, mut header_len, mut remaining, mut reserved) = ([0u8; 5], 0, 0, 0);
        for c in chunks {
            track(c, &mut header, &mut header_len, &mut remaining, &mut reserved, max, budget)?;
        }
        Ok((remaining, reserved))
    }

    #[test]
    fn messages_are_followed_across_chunks_and_released_as_the_next_begins() {
        let budget = MemoryBudget::new(100);
        let mut one = prefix(10);
        one.extend_from_slice(&[7; 4]);
        let rest = [vec![7; 6], prefix(30)[..2].to_vec(), prefix(30)[2..].to_vec(), vec![1; 5]];
        let mut chunks = vec![one];
        chunks.extend(rest);
        let (remaining, reserved) = run(&chunks, 64, &budget).unwrap();
        assert_eq!((remaining, reserved), (25, 30));
        assert_eq!(budget.available.load(Ordering::Relaxed), 70, "only the message in flight is reserved");
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_its_bytes() {
        let budget = MemoryBudget::new(1 << 30);
        let e = run(&[prefix(65)], 64, &budget).unwrap_err();
        assert_eq!(e.code, crate::error::Code::ResourceExhausted);
        assert_eq!(e.reason, reason::MESSAGE_TOO_LARGE);
    }

    #[test]
    fn the_budget_is_shared_and_refills() {
        let budget = MemoryBudget::new(100);
        assert!(budget.reserve(60));
        let e = run(&[prefix(50)], 64, &budget).unwrap_err();
        assert_eq!(e.reason, reason::MEMORY_BUDGET);
        budget.release(60);
        assert!(run(&[prefix(50)], 64, &budget).is_ok());
    }

    #[test]
    fn the_retry_delay_grows_with_the_callers_waiting_and_falls_back() {
        let s = Shedding::new(Duration::from_millis(100));
        assert_eq!(s.delay(), Duration::from_millis(100));
        // Many sheds in one window: 2,000 waiting callers at 100 ms is 20,000 a second.
        {
            let mut w = s.window.lock().unwrap();
            w.sheds = 5_000;
            w.start -= SHED_WINDOW;
        }
        let grown = s.delay();
        assert!(grown > Duration::from_secs(1), "{grown:?}");
        assert!(grown <= MAX_RETRY_AFTER);
        // A quiet window brings it back to the base.
        {
            let mut w = s.window.lock().unwrap();
            w.sheds = 0;
            w.start -= SHED_WINDOW * 4;
        }
        assert_eq!(s.delay(), Duration::from_millis(100));
    }

    #[test]
    fn grpc_timeouts_parse_by_the_spec() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(h("100m"), Some(Duration::from_millis(100)));
        assert_eq!(h("2S"), Some(Duration::from_secs(2)));
        assert_eq!(h("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(h("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "m", "123456789m", "10x", "-1S"] {
            assert_eq!(h(bad), None, "{bad:?}");
        }
    }
}
