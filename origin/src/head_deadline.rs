//! A request-head deadline for every request of a kept-alive connection, not just the first.
//!
//! actix-http arms its request-head timer (`client_request_timeout`) only for a connection's
//! first request, and clears its keep-alive timer as soon as a byte of the next request arrives:
//! a client that drips the head of a follow-up request would hold the connection forever. The
//! connection wrapper [`HeadTimed`] (inside the plain listener's
//! [`crate::sendfile::SendfileStream`], around the TLS stream on the TLS listener's HTTP/1.1
//! connections) closes such a connection once `header_timeout` has passed since the first byte
//! of a head arrived (or since the server last wrote, if later) without the request reaching
//! the handlers.
//!
//! The connection's [`HeadClock`] is shared with the request middleware through the connection
//! data: the middleware marks when a request's head has been parsed and when its handler is
//! done, so request bodies and slow handlers are never timed.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the middleware tells the connection (connection data, `HttpRequest::conn_data`).
#[derive(Debug, Default)]
pub struct HeadClock {
    /// When the first byte of a head not yet parsed arrived.
    started: Cell<Option<Instant>>,
    /// A request is in the handlers (its body, if any, is theirs to read).
    busy: Cell<bool>,
}

impl HeadClock {
    /// A request's head was parsed and handed to the handlers.
    pub fn request_started(&self) {
        self.started.set(None);
        self.busy.set(true);
    }

    /// The handlers returned the response (its body may still be streaming).
    pub fn request_done(&self) {
        self.busy.set(false);
    }
}

/// The deadline kept by the connection wrapper.
struct HeadDeadline {
    clock: Rc<HeadClock>,
    timeout: Option<Duration>,
    last_write: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// When `timer` goes off, kept here so that a read need not touch the timer: once polled,
    /// it stays registered with the connection's task until it goes off.
    armed: Option<Instant>,
}

impl HeadDeadline {
    /// A deadline of `timeout` (none: never).
    fn new(timeout: Option<Duration>) -> Self {
        HeadDeadline {
            clock: Rc::new(HeadClock::default()),
            timeout,
            last_write: None,
            timer: None,
            armed: None,
        }
    }

    /// The clock the middleware updates.
    fn clock(&self) -> Rc<HeadClock> {
        self.clock.clone()
    }

    /// The server wrote to the connection. A head's deadline counts from its first byte or the
    /// last write, whichever is later, so only the first write (actix's request is answered)
    /// and writes while a head is arriving need the time: the clock is read only for those.
    fn wrote(&mut self) {
        if self.last_write.is_none() || self.clock.started.get().is_some() {
            self.last_write = Some(Instant::now());
        }
    }

    /// Reads from `io` and checks the deadline: an error closes the connection.
    fn poll_read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(io).poll_read(cx, buf);
        let got = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        self.check(cx, got)?;
        r
    }

    /// Called on every read (`got`: bytes arrived). An error closes the connection.
    ///
    /// The timer is re-armed lazily: it keeps an older, earlier deadline and, when that goes off,
    /// is moved to the current one. So a busy connection re-registers it about once per timeout,
    /// not once per request, and a read before it is due only compares two instants.
    fn check(&mut self, cx: &mut Context<'_>, got: bool) -> io::Result<()> {
        // The first request is actix's (it answers 408); nothing is timed while no head is due.
        let (Some(timeout), Some(last_write)) = (self.timeout, self.last_write) else {
            return Ok(());
        };
        let mut now = None;
        if got && !self.clock.busy.get() && self.clock.started.get().is_none() {
            let t = Instant::now();
            self.clock.started.set(Some(t));
            now = Some(t);
        }
        let Some(first_byte) = self.clock.started.get() else {
            return Ok(());
        };
        let deadline = first_byte.max(last_write) + timeout;
        if let Some(armed) = self.armed {
            if armed <= deadline && now.unwrap_or_else(Instant::now) < armed {
                // Registered, and not yet due: it will wake this task.
                return Ok(());
            }
        }
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() > deadline {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                self.armed = None;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received within header_timeout",
                ));
            }
            // An earlier deadline that no longer holds.
            timer.as_mut().reset(deadline);
            let _ = timer.as_mut().poll(cx);
        }
        self.armed = Some(timer.deadline());
        Ok(())
    }
}

/// A connection stream whose follow-up request heads are bounded by a [`HeadDeadline`] (every
/// HTTP/1.1 connection: around the TLS stream, or inside [`crate::sendfile::SendfileStream`]).
pub struct HeadTimed<T> {
    io: T,
    head: HeadDeadline,
}

impl<T> HeadTimed<T> {
    /// Wraps `io` with a head deadline of `timeout` (none: a pass-through).
    pub fn new(io: T, timeout: Option<Duration>) -> Self {
        HeadTimed {
            io,
            head: HeadDeadline::new(timeout),
        }
    }

    /// The clock the middleware updates (`on_connect_ext`).
    pub fn clock(&self) -> Rc<HeadClock> {
        self.head.clock()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// The server wrote to the connection other than through `poll_write`.
    pub fn wrote(&mut self) {
        self.head.wrote();
    }

    /// Notes the result of a write made around `poll_write` (bytes written count) and passes
    /// it on.
    pub fn written(&mut self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.head.wrote();
        }
        r
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadTimed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.head.poll_read(&mut this.io, cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadTimed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.written(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.written(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
