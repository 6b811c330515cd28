//! Reading the source: opening it, reading one stream only, and packets one at a time.

use std::path::Path;

use ff::format;
use ffmpeg_next as ff;

use crate::error::{PackageError, Result};

/// Opens `path` with libavformat; failure is "not a media file".
pub fn open(path: &Path) -> Result<format::context::Input> {
    format::input(path).map_err(|e| PackageError::NotMedia {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Makes the demuxer skip every stream but `index` (their payloads are not even read).
pub fn keep_only(input: &mut format::context::Input, index: usize) {
    // SAFETY: plain field writes on streams of a context we own, before reading.
    unsafe {
        let ic = input.as_mut_ptr();
        for i in 0..(*ic).nb_streams as usize {
            if i != index {
                (*(*(*ic).streams.add(i))).discard = ff::ffi::AVDiscard::AVDISCARD_ALL;
            }
        }
    }
}

/// What the next read gave.
pub enum Next {
    /// A packet.
    Packet(ff::Packet),
    /// End of file.
    End,
    /// A read error (often a truncated file).
    Error(ff::Error),
}

/// Reads the next packet into a fresh packet: FFmpeg 5.1's `ff_read_packet` resets a reused
/// packet with `av_init_packet` without unreferencing its buffer, leaking every packet read.
pub fn next_packet(input: &mut format::context::Input) -> Next {
    loop {
        let mut pkt = ff::Packet::empty();
        match pkt.read(input) {
            Ok(()) => return Next::Packet(pkt),
            Err(ff::Error::Eof) => return Next::End,
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => continue,
            Err(e) => return Next::Error(e),
        }
    }
}
