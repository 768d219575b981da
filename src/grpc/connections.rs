//! Connections as the server accepts them: at most `max_connections` open at once
//! (one more is closed as soon as it is accepted, so a flood cannot pile up sockets
//! and buffers), a connection that says nothing within the handshake timeout is
//! closed, and so is one with no call in progress for the idle timeout. Each
//! connection's state travels with its requests (as connect info), so the edge layer
//! can count its calls.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::Sleep,
};
use tonic::transport::server::{Connected, TlsConnectInfo};
use tracing::debug;

/// Timeouts and the cap of [`ManagedIncoming`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What the server knows of one connection while it is open.
#[derive(Debug)]
pub struct ConnectionState {
    /// Calls in progress on it.
    active: AtomicUsize,
    /// When it last had no call in progress (or was opened).
    idle_since: Mutex<Instant>,
}

impl ConnectionState {
    fn new() -> Self {
        ConnectionState { active: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }

    /// Marks a call begun; the guard marks it ended when dropped.
    pub fn begin_call(self: &Arc<Self>) -> ActiveCall {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveCall(self.clone())
    }

    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(now.saturating_duration_since(since))
    }
}

/// A call in progress on a connection.
#[derive(Debug)]
pub struct ActiveCall(Arc<ConnectionState>);

impl Drop for ActiveCall {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }
}

/// The connect info of a managed connection, in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub local_addr: Option<SocketAddr>,
    pub remote_addr: Option<SocketAddr>,
    pub state: Arc<ConnectionState>,
}

impl ConnectionInfo {
    /// The connection of a request, plaintext or TLS.
    pub fn of(extensions: &http::Extensions) -> Option<&ConnectionInfo> {
        extensions
            .get::<ConnectionInfo>()
            .or_else(|| extensions.get::<TlsConnectInfo<ConnectionInfo>>().map(TlsConnectInfo::get_ref))
    }
}

/// Open connections, and the count's guard.
#[derive(Debug, Default)]
struct Open(AtomicUsize);

struct Slot(Arc<Open>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted TCP connection with its deadlines.
pub struct ManagedIo {
    inner: TcpStream,
    info: ConnectionInfo,
    limits: ConnectionLimits,
    accepted: Instant,
    spoke: bool,
    timer: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl ManagedIo {
    /// Whether the connection has outlived a deadline; if not, arms the timer for the
    /// next one.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let now = Instant::now();
        let next = if !self.spoke {
            if now >= self.accepted + self.limits.handshake_timeout {
                debug!(remote = ?self.info.remote_addr, "closing a connection that did not start talking");
                return true;
            }
            self.accepted + self.limits.handshake_timeout
        } else {
            match self.info.state.idle_for(now) {
                Some(idle) if idle >= self.limits.idle_timeout => {
                    debug!(remote = ?self.info.remote_addr, "closing an idle connection");
                    return true;
                }
                Some(idle) => now + (self.limits.idle_timeout - idle),
                // Calls in progress: look again after a whole idle period.
                None => now + self.limits.idle_timeout,
            }
        };
        self.timer.as_mut().reset(tokio::time::Instant::from_std(next));
        // Registers the waker; it cannot be ready, as `next` is in the future.
        let _ = self.timer.as_mut().poll(cx);
        false
    }
}

impl AsyncRead for ManagedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.spoke = true;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.timer.as_mut().poll(cx).is_ready() && self.expired(cx) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection deadline")));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for ManagedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connected for ManagedIo {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

/// The accept loop's stream of managed connections.
pub struct ManagedIncoming {
    listener: TcpListener,
    limits: ConnectionLimits,
    open: Arc<Open>,
}

impl ManagedIncoming {
    pub fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        ManagedIncoming { listener, limits, open: Arc::default() }
    }
}

impl Stream for ManagedIncoming {
    type Item = io::Result<ManagedIo>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let (stream, remote) = match std::task::ready!(this.listener.poll_accept(cx)) {
                Ok(accepted) => accepted,
                Err(e) => return Poll::Ready(Some(Err(e))),
            };
            if this.open.0.fetch_add(1, Ordering::AcqRel) >= this.limits.max_connections {
                this.open.0.fetch_sub(1, Ordering::AcqRel);
                debug!(%remote, max = this.limits.max_connections, "refusing a connection over the cap");
                drop(stream);
                continue;
            }
            let slot = Slot(this.open.clone());
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, "cannot set TCP_NODELAY");
            }
            let info = ConnectionInfo {
                local_addr: stream.local_addr().ok(),
                remote_addr: Some(remote),
                state: Arc::new(ConnectionState::new()),
            };
            let accepted = Instant::now();
            let timer = Box::pin(tokio::time::sleep(this.limits.handshake_timeout));
            return Poll::Ready(Some(Ok(ManagedIo {
                inner: stream,
                info,
                limits: this.limits,
                accepted,
                spoke: false,
                timer,
                _slot: slot,
            })));
        }
    }
}
