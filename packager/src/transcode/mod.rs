//! Decode once, scale once per rung, encode each rung with libx264 and the audio once with AAC.

pub mod decode;
pub mod encode;

use ffmpeg_next as ff;

/// Drains every packet an encoder has ready, handing each to `sink`.
/// Call after every `send_frame` and after `send_eof` (FFmpeg returns EAGAIN otherwise).
pub(crate) fn drain_packets(
    enc: &mut ff::encoder::Encoder,
    mut sink: impl FnMut(ff::Packet) -> crate::Result<()>,
) -> crate::Result<()> {
    loop {
        let mut pkt = ff::Packet::empty();
        match enc.receive_packet(&mut pkt) {
            Ok(()) => sink(pkt)?,
            Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => return Ok(()),
            Err(ff::Error::Eof) => return Ok(()),
            Err(e) => {
                return Err(crate::PackageError::Av {
                    context: "encoder".into(),
                    source: e,
                });
            }
        }
    }
}
