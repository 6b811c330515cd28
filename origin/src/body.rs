//! Response bodies streamed from disk with bounded memory: a list of pieces (literal bytes for
//! multipart headers, file ranges read in fixed-size chunks with positional reads). A range at offset 9 GB costs the same as one at 0: nothing is read before it.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

/// Bytes read per chunk: bounds memory per response.
pub const CHUNK: u64 = 256 * 1024;

/// Where file bytes come from.
#[derive(Clone)]
pub enum Source {
    /// An open file (positional reads).
    File(Arc<File>),
    /// A cached copy of the whole file.
    Memory(Bytes),
}

/// One part of a body.
pub enum Piece {
    /// Literal bytes (multipart headers).
    Bytes(Bytes),
    /// A byte range of the source.
    Range {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// Body length of `pieces`.
pub fn total_len(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Range { len, .. } => *len,
        })
        .sum()
}

/// Counts bytes actually handed to the connection.
pub trait SentCounter: Send + Sync {
    /// Adds `n` sent bytes.
    fn add(&self, n: u64);
}

/// A sized streaming body.
pub struct FileBody {
    source: Source,
    pieces: VecDeque<Piece>,
    total: u64,
    counter: Option<Arc<dyn SentCounter>>,
}

impl FileBody {
    /// A body of `pieces` read from `source`.
    pub fn new(source: Source, pieces: Vec<Piece>, counter: Option<Arc<dyn SentCounter>>) -> Self {
        let total = total_len(&pieces);
        FileBody {
            source,
            pieces: pieces.into(),
            total,
            counter,
        }
    }

    /// The same size (so `Content-Length` is unchanged) but no data, for HEAD: actix's HTTP/1
    /// dispatcher polls a HEAD response's body to the end and discards it, so a real body would
    /// read the whole file from disk and count it as sent.
    pub fn head_only(mut self) -> Self {
        self.pieces.clear();
        self.counter = None;
        self
    }

    fn count(&self, n: usize) {
        if let Some(c) = &self.counter {
            c.add(n as u64);
        }
    }
}

impl MessageBody for FileBody {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.total)
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        loop {
            let Some(piece) = this.pieces.pop_front() else {
                return Poll::Ready(None);
            };
            match piece {
                Piece::Bytes(b) => {
                    this.count(b.len());
                    return Poll::Ready(Some(Ok(b)));
                }
                Piece::Range { len: 0, .. } => continue,
                Piece::Range { offset, len } => {
                    let n = len.min(CHUNK);
                    if len > n {
                        this.pieces.push_front(Piece::Range {
                            offset: offset + n,
                            len: len - n,
                        });
                    }
                    match &this.source {
                        Source::Memory(all) => {
                            let (a, b) = (offset as usize, (offset + n) as usize);
                            let Some(slice) = (b <= all.len()).then(|| all.slice(a..b)) else {
                                return Poll::Ready(Some(Err(std::io::Error::other(
                                    "range beyond cached file",
                                ))));
                            };
                            this.count(slice.len());
                            return Poll::Ready(Some(Ok(slice)));
                        }
                        Source::File(f) => {
                            // Read on the worker like nginx's event loop does: page-cache reads of
                            // a chunk take microseconds, a thread-pool hop per chunk costs more.
                            let mut buf = vec![0u8; n as usize];
                            if let Err(e) = f.read_exact_at(&mut buf, offset) {
                                return Poll::Ready(Some(Err(e)));
                            }
                            this.count(buf.len());
                            return Poll::Ready(Some(Ok(Bytes::from(buf))));
                        }
                    }
                }
            }
        }
    }
}
