//! A closed-loop load generator: a fixed number of concurrent streams, each sending
//! its next request when the last is answered, for a fixed time. Every answer is
//! counted by status code; only OK answers count as throughput.

use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, Instant},
};

use tonic::transport::Channel;

/// Longest a single call may take before it counts as an error; keeps every loop
/// bounded in time.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q` quantile of OK latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// How many HTTP/2 connections to spread `streams` over: one per 16 streams, 16 at
/// most.
pub fn connections_for(streams: usize) -> usize {
    streams.div_ceil(16).clamp(1, 16)
}

/// Channels (HTTP/2 connections) to spread `streams` over (`connections_for`).
pub async fn channels(target: &str, streams: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..connections_for(streams) {
        out.push(partnership_metrics::configuration::ClientArgs::plain(target).channel().await?);
    }
    Ok(out)
}

/// Runs `make()` to completion on a single-threaded tokio runtime on a thread of its
/// own. Channels must be made inside it: a connection lives on the runtime that made it.
pub async fn on_own_thread<F, Fut, T>(make: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(make())
    })
    .await?
}

pub async fn closed_loop<C, F, Fut>(channels: &[C], streams: usize, duration: Duration, call: F) -> LoadResult
where
    C: Clone + Send + 'static,
    F: Fn(C, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(streams);
    for s in 0..streams {
        let channel = channels[s % channels.len()].clone();
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = LoadResult::default();
            let mut seq = s as u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match tokio::time::timeout(CALL_TIMEOUT, call(channel.clone(), seq)).await {
                    Ok(Ok(())) => {
                        r.ok += 1;
                        r.latencies_us.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    Ok(Err(status)) => *r.errors.entry(format!("{:?}", status.code())).or_default() += 1,
                    Err(_) => *r.errors.entry("ClientTimeout".into()).or_default() += 1,
                }
                seq += streams as u64;
            }
            r
        }));
    }
    let mut total = LoadResult::default();
    for t in tasks {
        match t.await {
            Ok(r) => {
                total.ok += r.ok;
                total.latencies_us.extend(r.latencies_us);
                for (k, v) in r.errors {
                    *total.errors.entry(k).or_default() += v;
                }
            }
            // A stream that died is an error of the run, never silently fewer calls.
            Err(_) => *total.errors.entry("StreamTaskFailed".into()).or_default() += 1,
        }
    }
    total.elapsed = start.elapsed();
    total.latencies_us.sort_unstable();
    total
}

/// A client codec that encodes requests with prost and keeps responses as raw bytes:
/// the generator checks status codes and lengths, not contents, so it spends its
/// CPU on sending load rather than on parsing large reports.
#[derive(Debug)]
pub struct RawResponseCodec<Req>(std::marker::PhantomData<Req>);

impl<Req> Default for RawResponseCodec<Req> {
    fn default() -> Self {
        RawResponseCodec(std::marker::PhantomData)
    }
}

#[derive(Debug, Default)]
pub struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl<Req: prost::Message + Send + 'static> tonic::codec::Codec for RawResponseCodec<Req> {
    type Encode = Req;
    type Decode = bytes::Bytes;
    type Encoder = tonic_prost::ProstEncoder<Req>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// One unary call whose response body is returned undecoded.
/// `authorization`, when given, is sent as the call's `authorization` header.
pub async fn raw_unary<Req: prost::Message + Send + 'static>(
    channel: Channel,
    path: &'static str,
    request: Req,
    authorization: Option<&tonic::metadata::AsciiMetadataValue>,
) -> Result<bytes::Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| tonic::Status::unknown(format!("channel not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(path);
    let mut request = tonic::Request::new(request);
    if let Some(a) = authorization {
        request.metadata_mut().insert("authorization", a.clone());
    }
    let response = grpc.unary(request, path, RawResponseCodec::<Req>::default()).await?;
    Ok(response.into_inner())
}

/// A bare HTTP/2 connection to the server, for load whose generator must cost far
/// less a call than the server does: each request's bytes are framed once before the
/// run, and a call is one HEADERS and one DATA frame out and the answer's frames
/// read back, without tonic's channel (a buffer task and a tower stack a call). At
/// five times the server's capacity a tonic generator on one core is itself the
/// bound (it spends about what the server spends a call), so the overload phase
/// uses this one.
#[derive(Clone)]
pub struct H2Channel {
    send: h2::client::SendRequest<bytes::Bytes>,
    authority: http::uri::Authority,
}

/// `n` bare HTTP/2 connections to `target` (`http://host:port`).
pub async fn h2_channels(target: &str, n: usize) -> anyhow::Result<Vec<H2Channel>> {
    let uri: http::Uri = target.parse()?;
    let authority = uri.authority().cloned().ok_or_else(|| anyhow::anyhow!("no host:port in {target}"))?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, bytes::Bytes>(tcp)
            .await?;
        tokio::spawn(async move {
            // The connection ends with the run; an error then is the server closing it.
            let _ = connection.await;
        });
        out.push(H2Channel { send, authority: authority.clone() });
    }
    Ok(out)
}

/// A request message framed for gRPC (uncompressed flag, length, bytes).
pub fn grpc_frame(message: &impl prost::Message) -> bytes::Bytes {
    let body = message.encode_to_vec();
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.into()
}

/// One unary call over a bare connection; returns the answer's body length, or its
/// status (with its details, as `tonic::Status` decodes them) when it is not OK.
pub async fn h2_unary(
    channel: H2Channel,
    path: &'static str,
    frame: bytes::Bytes,
) -> Result<usize, tonic::Status> {
    let transport = |e: h2::Error| tonic::Status::unavailable(format!("HTTP/2: {e}"));
    let mut send = channel.send.ready().await.map_err(transport)?;
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(channel.authority)
        .path_and_query(path)
        .build()
        .map_err(|e| tonic::Status::internal(format!("uri: {e}")))?;
    let request = http::Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| tonic::Status::internal(format!("request: {e}")))?;
    let (response, mut stream) = send.send_request(request, false).map_err(transport)?;
    stream.send_data(frame, true).map_err(transport)?;
    let (parts, mut body) = response.await.map_err(transport)?.into_parts();
    // A trailers-only answer (every refusal) carries its status in the headers and
    // has no body.
    if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
        return if status.code() == tonic::Code::Ok { Ok(0) } else { Err(status) };
    }
    let mut length = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(transport)?;
        length += chunk.len();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(transport)?;
    match trailers.as_ref().and_then(tonic::Status::from_header_map) {
        Some(status) if status.code() == tonic::Code::Ok => Ok(length),
        Some(status) => Err(status),
        None => Err(tonic::Status::internal("an answer without grpc-status")),
    }
}
