//! Zero-copy file bodies for plain HTTP/1.1: file ranges go from the page cache to the socket
//! with `sendfile(2)`, as nginx does, instead of being read into memory and copied twice more
//! (into actix's write buffer, then into the socket).
//!
//! actix-http has no sendfile support: its HTTP/1 encoder copies every body chunk into the
//! connection's write buffer. So the connection's stream is wrapped ([`SendfileStream`]) and a
//! file body ([`SplicedBody`]) yields, for each file range, a 16-byte *marker* (a NUL byte, a
//! per-connection random nonce and the range's sequence number) and queues the range on the
//! connection ([`Splices`]). The response is sent without chunking (`Content-Length` set by the
//! handler), so actix writes the marker verbatim after the head; the stream finds it in what
//! actix writes and sends the range with that sequence number in its place. Ranges whose marker
//! actix never wrote (a body it discarded) are skipped, so a marker is only ever replaced by its
//! own range. Header bytes never contain NUL, and the nonce is never sent, so no other body can
//! forge a marker.
//!
//! TLS and HTTP/2 connections, HEAD, and in-memory (cached, compressed) bodies keep the copying
//! [`crate::body::FileBody`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{Piece, SentCounter};
use crate::head_deadline::{HeadClock, HeadTimed};

/// Marker length: a NUL byte, 11 random bytes, a 4-byte sequence number.
const MARKER_LEN: usize = 16;
/// The part of the marker that is the same for every range of a connection.
const PREFIX_LEN: usize = 12;

/// Most bytes sent in one `poll_write` before yielding to the other connections of the worker
/// (nginx's `sendfile_max_chunk` default).
const MAX_PER_POLL: u64 = 2 << 20;

/// One file range waiting to be sent in place of a marker.
struct Splice {
    seq: u32,
    /// `sendfile` is not supported for this file: copy instead.
    copy: bool,
    file: Arc<File>,
    offset: u64,
    len: u64,
    counter: Option<Arc<dyn SentCounter>>,
}

/// The ranges queued on one connection, and its marker. Handlers find it in the connection's
/// data (`HttpRequest::conn_data`) when the connection supports sendfile.
pub struct Splices {
    prefix: [u8; PREFIX_LEN],
    queue: RefCell<VecDeque<Splice>>,
    next_seq: std::cell::Cell<u32>,
}

impl Splices {
    fn new() -> Self {
        let mut prefix: [u8; PREFIX_LEN] = rand::random();
        prefix[0] = 0;
        Splices {
            prefix,
            queue: RefCell::new(VecDeque::new()),
            next_seq: std::cell::Cell::new(0),
        }
    }

    /// Queues a range; returns its marker.
    fn push(
        &self,
        file: Arc<File>,
        offset: u64,
        len: u64,
        counter: Option<Arc<dyn SentCounter>>,
    ) -> Bytes {
        let seq = self.next_seq.get();
        self.next_seq.set(seq.wrapping_add(1));
        self.queue.borrow_mut().push_back(Splice {
            seq,
            copy: false,
            file,
            offset,
            len,
            counter,
        });
        let mut marker = [0u8; MARKER_LEN];
        marker[..PREFIX_LEN].copy_from_slice(&self.prefix);
        marker[PREFIX_LEN..].copy_from_slice(&seq.to_le_bytes());
        Bytes::copy_from_slice(&marker)
    }

    /// The range of `marker`, dropping older ones whose markers were never written.
    fn take(&self, marker: &[u8]) -> Option<Splice> {
        let seq = u32::from_le_bytes(marker.get(PREFIX_LEN..MARKER_LEN)?.try_into().ok()?);
        let mut q = self.queue.borrow_mut();
        while let Some(s) = q.pop_front() {
            if s.seq == seq {
                return Some(s);
            }
        }
        None
    }
}

/// A TCP stream that sends queued file ranges with `sendfile` where their markers appear in
/// what the HTTP/1 dispatcher writes.
pub struct SendfileStream {
    /// The connection; its wrapper closes it when a follow-up request's head does not arrive
    /// in time.
    io: HeadTimed<TcpStream>,
    splices: Rc<Splices>,
    finder: memchr::memmem::Finder<'static>,
    /// The range being sent; its marker is at the start of the dispatcher's buffer.
    active: Option<Splice>,
}

impl SendfileStream {
    /// Wraps an accepted connection; `header_timeout` bounds every request head after the first.
    pub fn new(io: TcpStream, header_timeout: Option<std::time::Duration>) -> Self {
        let splices = Rc::new(Splices::new());
        let finder = memchr::memmem::Finder::new(&splices.prefix).into_owned();
        SendfileStream {
            io: HeadTimed::new(io, header_timeout),
            splices,
            finder,
            active: None,
        }
    }

    /// The connection's request-head clock, for the middleware (`on_connect_ext`).
    pub fn head_clock(&self) -> Rc<HeadClock> {
        self.io.clock()
    }

    /// The connection's queue, for the request handlers (`on_connect_ext`).
    pub fn splices(&self) -> Rc<Splices> {
        self.splices.clone()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.io.get_ref().peer_addr()
    }

    /// Writes `buf` with `MSG_MORE`: the kernel holds a partial packet for what follows.
    fn poll_send_more(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let tcp = self.io.get_ref();
            std::task::ready!(tcp.poll_write_ready(cx))?;
            let fd = tcp.as_raw_fd();
            let r = tcp.try_io(Interest::WRITABLE, || {
                send(fd, buf, libc::MSG_MORE).map(|n| n as usize)
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Sends the active range; `Ready(Ok(()))` when it is all sent.
    fn poll_splice(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut sent_now = 0u64;
        loop {
            let Some(s) = self.active.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if s.len == 0 {
                self.active = None;
                return Poll::Ready(Ok(()));
            }
            if sent_now >= MAX_PER_POLL {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let tcp = self.io.get_ref();
            std::task::ready!(tcp.poll_write_ready(cx))?;
            let want = s.len.min(MAX_PER_POLL) as usize;
            let (out, file) = (tcp.as_raw_fd(), s.file.as_raw_fd());
            let mut off = libc::off_t::try_from(s.offset).map_err(io::Error::other)?;
            let copy = s.copy;
            let r = tcp.try_io(Interest::WRITABLE, || {
                if copy {
                    return copy_range(&s.file, s.offset, want, out);
                }
                // SAFETY: both descriptors are open for the duration of the call.
                byte_count(unsafe { libc::sendfile(out, file, &mut off, want) })
            });
            match r {
                // The file is shorter than when its length was taken: the response cannot be
                // completed, so the connection is closed (as nginx does).
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file truncated while being sent",
                    )))
                }
                Ok(n) => {
                    self.io.wrote();
                    s.offset += n;
                    s.len -= n;
                    sent_now += n;
                    if let Some(c) = &s.counter {
                        c.add(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // A file system without sendfile support: read and write instead.
                Err(e)
                    if !s.copy
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                        ) =>
                {
                    s.copy = true;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// The fallback of `sendfile`: up to `want` bytes at `offset` of `file`, read and written to
/// `out` (at most one 64 KiB buffer). Returns the bytes written; `WouldBlock` as the socket's.
fn copy_range(file: &File, offset: u64, want: usize, out: std::os::fd::RawFd) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; want.min(64 * 1024)];
    let n = file.read_at(&mut buf, offset)?;
    if n == 0 {
        return Ok(0);
    }
    send(out, &buf[..n], 0)
}

/// `send(2)` of `buf` on `fd` with `flags` (never raising SIGPIPE).
fn send(fd: std::os::fd::RawFd, buf: &[u8], flags: libc::c_int) -> io::Result<u64> {
    // SAFETY: a valid descriptor and a buffer of `buf.len()` readable bytes.
    byte_count(unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            flags | libc::MSG_NOSIGNAL,
        )
    })
}

/// A byte count returned by a system call, or its error.
fn byte_count(n: isize) -> io::Result<u64> {
    u64::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = this.poll_write_inner(cx, buf);
        this.io.written(r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl SendfileStream {
    /// Writes what precedes the next marker, or sends the marker's range in its place.
    fn poll_write_inner(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self;
        if this.active.is_none() {
            match this.finder.find(buf) {
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
                Some(0) => {
                    let Some(next) = this.splices.take(buf) else {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "sendfile marker without its queued range",
                        )));
                    };
                    this.active = Some(next);
                }
                // What precedes the marker (the response head) goes first, corked so that
                // it leaves in the same packets as the file's first bytes (nginx's
                // `tcp_nopush`): one wake-up of the client per response, not two.
                Some(at) => return this.poll_send_more(cx, &buf[..at]),
            }
        }
        std::task::ready!(this.poll_splice(cx))?;
        Poll::Ready(Ok(MARKER_LEN))
    }
}

/// A file body sent by the connection with `sendfile`: literal pieces (multipart headers) are
/// yielded as bytes, file ranges as markers. Its size is reported as a stream: the handler sets
/// `Content-Length` itself (`no_chunking`), since actix only sees the markers.
pub struct SplicedBody {
    file: Arc<File>,
    pieces: VecDeque<Piece>,
    splices: Rc<Splices>,
    counter: Option<Arc<dyn SentCounter>>,
}

impl SplicedBody {
    /// A body of `pieces` of `file`, sent on the connection that owns `splices`.
    pub fn new(
        file: Arc<File>,
        pieces: Vec<Piece>,
        splices: Rc<Splices>,
        counter: Option<Arc<dyn SentCounter>>,
    ) -> Self {
        SplicedBody {
            file,
            pieces: pieces.into(),
            splices,
            counter,
        }
    }
}

impl MessageBody for SplicedBody {
    type Error = io::Error;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match this.pieces.pop_front() {
                None => return Poll::Ready(None),
                Some(Piece::Bytes(b)) => {
                    if let Some(c) = &this.counter {
                        c.add(b.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(b)));
                }
                Some(Piece::Range { len: 0, .. }) => continue,
                Some(Piece::Range { offset, len }) => {
                    let marker =
                        this.splices
                            .push(this.file.clone(), offset, len, this.counter.clone());
                    return Poll::Ready(Some(Ok(marker)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_takes_its_own_range_and_skips_unwritten_ones() {
        let file = Arc::new(tempfile::tempfile().unwrap());
        let s = Splices::new();
        let markers: Vec<Bytes> = (0..3u64)
            .map(|i| s.push(file.clone(), i * 10, 5, None))
            .collect();
        assert!(markers.iter().all(|m| m.len() == MARKER_LEN && m[0] == 0));
        assert!(markers.iter().all(|m| m[..PREFIX_LEN] == s.prefix));
        // The marker of range 1 arrives first (range 0's was discarded): range 0 is dropped.
        assert_eq!(s.take(&markers[1]).map(|r| r.offset), Some(10));
        assert!(s.take(&markers[0]).is_none(), "range 0 is gone");
        // Nothing queued matches any more; a truncated marker matches nothing.
        let m = s.push(file, 99, 1, None);
        assert!(s.take(&m[..MARKER_LEN - 1]).is_none());
        assert!(s.queue.borrow().len() == 1);
        assert_eq!(s.take(&m).map(|r| r.offset), Some(99));
    }
}
