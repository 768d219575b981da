//! Tower layers around every RPC: the caller's identity and a tracing span with the
//! method, the gRPC status code and the latency.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Span, field::Empty, info, warn};

/// Who is calling. Established in one place, [`IdentityLayer`], and read by handlers
/// from the request extensions; authentication (mTLS, bearer tokens) will replace the
/// anonymous identity there without touching the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerIdentity {
    /// No credentials presented; every caller is anonymous until authentication lands.
    Anonymous,
}

/// Puts a [`CallerIdentity`] into every request's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityLayer;

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Identity<S> {
        Identity { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Identity<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Identity<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(CallerIdentity::Anonymous);
        self.inner.call(req)
    }
}

/// Opens a span per RPC (`rpc` with `rpc.method`) and, when the call ends, records the
/// gRPC status code and the latency on it and logs one line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcTraceLayer;

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> RpcTrace<S> {
        RpcTrace { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTrace<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for RpcTrace<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "rpc",
            rpc.method = req.uri().path(),
            rpc.grpc.status_code = Empty,
            latency_ms = Empty,
        );
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        TracedFuture { inner, call: Some(Call { span, start: Instant::now() }) }
    }
}

/// The span of one call and when it began; finished exactly once.
#[derive(Debug)]
struct Call {
    span: Span,
    start: Instant,
}

impl Call {
    fn finish(self, code: Option<i32>) {
        let latency_ms = self.start.elapsed().as_secs_f64() * 1000.0;
        // A stream that ends without a grpc-status was cut off: report it as UNKNOWN (2).
        let code = code.unwrap_or(2);
        self.span.record("rpc.grpc.status_code", code);
        self.span.record("latency_ms", latency_ms);
        let code_name = format!("{:?}", tonic::Code::from(code));
        // INTERNAL, UNKNOWN, DATA_LOSS and UNAVAILABLE are ours to look at; the rest are
        // the caller's business.
        if matches!(code, 2 | 13 | 14 | 15) {
            warn!(parent: &self.span, code, %code_name, latency_ms, "rpc failed");
        } else {
            info!(parent: &self.span, code, %code_name, latency_ms, "rpc finished");
        }
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

pin_project! {
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<Response<TracedBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.call.as_ref().map(|c| c.span.enter());
            std::task::ready!(this.inner.poll(cx))
        };
        let mut call = this.call.take();
        Poll::Ready(result.map(|response| {
            // A trailers-only response (every error, in tonic) has its status in the
            // headers; otherwise it arrives in the trailers at the end of the body.
            if let Some(code) = grpc_status(response.headers())
                && let Some(c) = call.take()
            {
                c.finish(Some(code));
            }
            response.map(|inner| TracedBody { inner, call })
        }))
    }
}

pin_project! {
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }

    impl<B> PinnedDrop for TracedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // The body was dropped before its end: the client went away (CANCELLED, 1).
            if let Some(call) = this.project().call.take() {
                call.finish(Some(1));
            }
        }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = {
            let _entered = this.call.as_ref().map(|c| c.span.enter());
            this.inner.poll_frame(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(call) = this.call.take()
                {
                    call.finish(grpc_status(trailers));
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.finish(None);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
