//! Tower layers around every RPC: the caller's identity and authorisation, and a
//! tracing span with the method, the gRPC status code and the latency.

use std::{
    future::{Ready, ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use futures::future::Either;
use tonic::transport::server::TlsConnectInfo;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Span, debug, field::Empty, info, warn};

use super::{
    authz::{self, Route},
    connections::ConnectionInfo,
};
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::errors::{ERROR_DOMAIN, library_status};
use crate::{
    auth::Authenticator,
    domain::access::Access,
    error::{Error, reason},
};

/// Authenticates and authorises every call, in one place, before the request is
/// read: health is open; reflection needs an authenticated caller unless it is
/// public; every RPC needs its permission from [`authz::RPC_PERMISSIONS`], granted
/// by one of the caller's roles. The grant (principal, permission, scope) goes into
/// the request's extensions, where handlers find it ([`authz::grant`]); a refusal is
/// answered here (UNAUTHENTICATED or PERMISSION_DENIED, with its `ErrorInfo`) and the
/// handler never runs.
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    auth: Arc<Authenticator>,
    reflection_public: bool,
}

impl IdentityLayer {
    pub fn new(auth: Arc<Authenticator>, reflection_public: bool) -> Self {
        IdentityLayer { auth, reflection_public }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = Identity<S>;

    fn layer(&self, inner: S) -> Identity<S> {
        Identity { inner, auth: self.auth.clone(), reflection_public: self.reflection_public }
    }
}

#[derive(Debug, Clone)]
pub struct Identity<S> {
    inner: S,
    auth: Arc<Authenticator>,
    reflection_public: bool,
}

impl<S> Identity<S> {
    /// The grant for this call (`None` for calls that need none), or the refusal.
    fn decide<B>(&self, req: &Request<B>) -> Result<Option<authz::Grant>, Error> {
        let route = authz::route(req.uri().path());
        match route {
            Route::Health => return Ok(None),
            Route::Reflection if self.reflection_public => return Ok(None),
            _ => {}
        }
        let peer_certs =
            req.extensions().get::<TlsConnectInfo<ConnectionInfo>>().and_then(TlsConnectInfo::peer_certs);
        let principal = self.auth.authenticate(req.headers(), peer_certs.as_deref().map(Vec::as_slice))?;
        match route {
            Route::Rpc { method, permission } => {
                let scope = principal.grant(permission)?;
                let access = Access { actor: principal.actor(), permission, scope };
                Ok(Some(authz::Grant { principal, method, access }))
            }
            Route::Reflection | Route::Health => Ok(None),
            Route::Unknown => {
                Err(Error::unimplemented(format!("{} is not a method of this server", req.uri().path())))
            }
        }
    }
}

impl<S, B> Service<Request<B>> for Identity<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<tonic::body::Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.decide(&req) {
            Ok(grant) => {
                if let Some(grant) = grant {
                    req.extensions_mut().insert(grant);
                }
                Either::Left(self.inner.call(req))
            }
            Err(refused) => {
                debug!(reason = refused.reason, "call refused before it was read");
                Either::Right(ready(Ok(tonic::Status::from(refused).into_http())))
            }
        }
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
        let (service, method) = authz::rpc_name(req.uri().path());
        // The OpenTelemetry RPC conventions: a SERVER span named service/method.
        let span = tracing::info_span!(
            "rpc",
            otel.name = %req.uri().path().trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            server.address = Empty,
            server.port = Empty,
            latency_ms = Empty,
        );
        if !span.is_disabled() {
            if let Some(local) = ConnectionInfo::of(req.extensions()).and_then(|c| c.local_addr) {
                span.record("server.address", tracing::field::display(local.ip()));
                span.record("server.port", i64::from(local.port()));
            }
            // A caller's trace is continued: this span's parent is the caller's span.
            if req.headers().contains_key("traceparent") {
                let _ = span.set_parent(crate::telemetry::caller_context(req.headers()));
            }
        }
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        TracedFuture { inner, call: Some(Call { span, start: Instant::now(), service, method }) }
    }
}

/// The span of one call and when it began; finished exactly once.
#[derive(Debug)]
struct Call {
    span: Span,
    start: Instant,
    service: &'static str,
    method: &'static str,
}

/// What a finished call's status says about whose fault a failure was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// The caller's business: bad input, no permission, limits, its own deadline.
    ClientFault,
    /// Ours to look at.
    ServerFault,
}

impl Call {
    fn finish(self, code: i32, outcome: Outcome) {
        let elapsed = self.start.elapsed();
        crate::telemetry::metrics::metrics().rpc(self.service, self.method, code, elapsed);
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        self.span.record("rpc.grpc.status_code", code);
        self.span.record("latency_ms", latency_ms);
        // The conventions' server-side errors: the ones a server is answerable for.
        if matches!(
            Code::from(code),
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ) {
            self.span.record("otel.status_code", "ERROR");
        }
        let code_name = format!("{:?}", tonic::Code::from(code));
        match outcome {
            Outcome::ServerFault => warn!(parent: &self.span, code, %code_name, latency_ms, "rpc failed"),
            Outcome::ClientFault | Outcome::Ok => {
                info!(parent: &self.span, code, %code_name, latency_ms, "rpc finished")
            }
        }
    }
}

/// Gives a status the server's handlers did not make (tonic's own: an undecodable
/// message, a deadline, an unknown compression) the `ErrorInfo` every non-OK status
/// carries, and the code the gRPC status table gives; says whose fault it was.
/// `None` when the headers carry no status.
fn settle_status(headers: &mut HeaderMap) -> Option<(i32, Outcome)> {
    let raw = headers.get("grpc-status")?;
    if raw.as_bytes() == b"0" {
        return Some((0, Outcome::Ok));
    }
    let status = tonic::Status::from_header_map(headers)?;
    let details = status.get_error_details();
    if let Some(info) = details.error_info() {
        // One of ours: INTERNAL, UNKNOWN and DATA_LOSS mean a fault of the server.
        let server = matches!(status.code(), Code::Internal | Code::Unknown | Code::DataLoss)
            && info.reason != reason::MALFORMED_REQUEST;
        return Some((
            status.code() as i32,
            if server { Outcome::ServerFault } else { Outcome::ClientFault },
        ));
    }
    let (code, why, server_fault) = library_status(status.code(), status.message());
    let outcome = if server_fault { Outcome::ServerFault } else { Outcome::ClientFault };
    let fixed = tonic::Status::with_error_details(
        code,
        status.message(),
        ErrorDetails::with_error_info(why, ERROR_DOMAIN, std::collections::HashMap::new()),
    );
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(h);
    }
    if fixed.add_header(headers).is_err() {
        // The message did not fit a header; keep the code at least.
        headers.insert("grpc-status", http::HeaderValue::from(code as i32));
    }
    Some((code as i32, outcome))
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
        Poll::Ready(result.map(|mut response| {
            // A trailers-only response (every error, in tonic) has its status in the
            // headers; otherwise it arrives in the trailers at the end of the body.
            if let Some((code, outcome)) = settle_status(response.headers_mut())
                && let Some(c) = call.take()
            {
                c.finish(code, outcome);
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
            // The body was dropped before its end: the client went away (CANCELLED).
            if let Some(call) = this.project().call.take() {
                call.finish(Code::Cancelled as i32, Outcome::ClientFault);
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
        let mut polled = {
            let _entered = this.call.as_ref().map(|c| c.span.enter());
            this.inner.poll_frame(cx)
        };
        match &mut polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut()
                    && let Some(call) = this.call.take()
                {
                    // No grpc-status at the end means the stream was cut off: UNKNOWN.
                    let (code, outcome) =
                        settle_status(trailers).unwrap_or((Code::Unknown as i32, Outcome::ServerFault));
                    call.finish(code, outcome);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.finish(Code::Unknown as i32, Outcome::ServerFault);
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
