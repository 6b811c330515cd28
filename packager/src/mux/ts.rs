//! MPEG-TS segment writer for HLS, built on libavformat's `mpegts` muxer.
//!
//! One muxer context lives across all segments of a rendition and only its output is switched at
//! each cut (as FFmpeg's own `hls` muxer does): continuity counters and timestamps continue
//! across segment files, and PAT/PMT are re-emitted at the start of every segment.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ff::{ffi, format, Packet, Rational, Rescale};
use ffmpeg_next as ff;

use crate::error::{AvContext, IoContext, PackageError, Result};
use crate::package::segment_file_name;

/// Constant added to every TS timestamp so that B-frame decode times and AAC priming
/// (negative relative to the first picture) stay positive, as Apple's segmenter does.
pub const TS_OFFSET_SECS: i64 = 10;
/// The 90 kHz clock of MPEG-TS.
pub const TS_TIMESCALE: u32 = 90_000;

/// Output that can be pointed at a new file between segments.
#[derive(Clone, Default)]
struct SwitchSink(Arc<Mutex<SinkState>>);

#[derive(Default)]
struct SinkState {
    file: Option<BufWriter<File>>,
    bytes: u64,
}

impl Write for SwitchSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self
            .0
            .lock()
            .map_err(|_| io::Error::other("sink lock poisoned"))?;
        let f = s
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("TS data outside a segment"))?;
        f.write_all(buf)?;
        s.bytes += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut s = self
            .0
            .lock()
            .map_err(|_| io::Error::other("sink lock poisoned"))?;
        match s.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Audio stream parameters for the TS muxer.
#[derive(Debug, Clone)]
pub struct TsAudio {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u32,
    /// AudioSpecificConfig (the muxer derives ADTS headers from it).
    pub asc: Vec<u8>,
    /// Time base of incoming audio packets.
    pub time_base: Rational,
}

/// Writes one rendition's `seg_NNNNN.ts` files.
pub struct TsWriter {
    octx: format::context::Output,
    sink: SwitchSink,
    dir: PathBuf,
    video_tb: Rational,
    audio_tb: Option<Rational>,
    header_written: bool,
    current: Option<PathBuf>,
    context: String,
}

impl TsWriter {
    /// Creates a writer for a rendition in `dir` (which must exist). Video packets are Annex B
    /// H.264 with in-band parameter sets, timestamped in `video_tb`.
    pub fn new(
        dir: &Path,
        width: u32,
        height: u32,
        video_tb: Rational,
        audio: Option<&TsAudio>,
    ) -> Result<Self> {
        let context = format!("TS muxer for {}", dir.display());
        let sink = SwitchSink::default();
        let io = format::context::StreamIo::from_write(sink.clone()).av(|| context.clone())?;
        let mut octx = format::output_to_stream(io, None, Some("mpegts")).av(|| context.clone())?;
        // SAFETY: we fill codec parameters of freshly created streams on a context we own.
        unsafe {
            let oc = octx.as_mut_ptr();
            (*oc).max_delay = 700_000; // as ffmpeg's CLI (-muxdelay 0.7): PCR leads PTS sanely.
            let st = ffi::avformat_new_stream(oc, std::ptr::null());
            if st.is_null() {
                return Err(av_err(&context, ffi::AVERROR(ffi::ENOMEM)));
            }
            let par = (*st).codecpar;
            (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
            (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_H264;
            (*par).width = width as i32;
            (*par).height = height as i32;
            (*st).time_base = ffi::AVRational {
                num: 1,
                den: TS_TIMESCALE as i32,
            };
            if let Some(a) = audio {
                let st = ffi::avformat_new_stream(oc, std::ptr::null());
                if st.is_null() {
                    return Err(av_err(&context, ffi::AVERROR(ffi::ENOMEM)));
                }
                let par = (*st).codecpar;
                (*par).codec_type = ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
                (*par).codec_id = ffi::AVCodecID::AV_CODEC_ID_AAC;
                (*par).sample_rate = a.sample_rate as i32;
                ffi::av_channel_layout_default(&mut (*par).ch_layout, a.channels as i32);
                (*par).frame_size = 1024;
                let ext = ffi::av_mallocz(a.asc.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize)
                    as *mut u8;
                if ext.is_null() {
                    return Err(av_err(&context, ffi::AVERROR(ffi::ENOMEM)));
                }
                std::ptr::copy_nonoverlapping(a.asc.as_ptr(), ext, a.asc.len());
                (*par).extradata = ext;
                (*par).extradata_size = a.asc.len() as i32;
                (*st).time_base = ffi::AVRational {
                    num: 1,
                    den: TS_TIMESCALE as i32,
                };
            }
        }
        Ok(TsWriter {
            octx,
            sink,
            dir: dir.to_path_buf(),
            video_tb,
            audio_tb: audio.map(|a| a.time_base),
            header_written: false,
            current: None,
            context,
        })
    }

    /// Opens segment `number` (1-based); the previous one must have been finished.
    pub fn start_segment(&mut self, number: u32) -> Result<()> {
        let path = self.dir.join(segment_file_name(number, "ts"));
        let file = File::create(&path).write_ctx(&path)?;
        {
            let mut s = self.sink.0.lock().map_err(|_| PackageError::Aborted)?;
            s.file = Some(BufWriter::with_capacity(256 * 1024, file));
            s.bytes = 0;
        }
        self.current = Some(path);
        if !self.header_written {
            let mut opts = ff::Dictionary::new();
            // Fresh PAT/PMT at every segment start; flushable so cuts are exact.
            opts.set("mpegts_flags", "resend_headers");
            opts.set("flush_packets", "1");
            self.octx
                .write_header_with(opts)
                .av(|| self.context.clone())?;
            self.header_written = true;
        } else {
            // SAFETY: priv_data belongs to the mpegts muxer we created.
            let r = unsafe {
                ffi::av_opt_set(
                    (*self.octx.as_mut_ptr()).priv_data,
                    c"mpegts_flags".as_ptr(),
                    c"resend_headers".as_ptr(),
                    0,
                )
            };
            if r < 0 {
                return Err(av_err(&self.context, r));
            }
        }
        Ok(())
    }

    fn write(&mut self, pkt: &Packet, tb: Rational, stream: usize) -> Result<()> {
        let mut p = pkt.clone();
        p.set_stream(stream);
        p.set_position(-1);
        let to = Rational::new(1, TS_TIMESCALE as i32);
        let off = TS_OFFSET_SECS * i64::from(TS_TIMESCALE);
        p.set_pts(pkt.pts().map(|t| t.rescale(tb, to) + off));
        p.set_dts(pkt.dts().map(|t| t.rescale(tb, to) + off));
        p.set_duration(pkt.duration().rescale(tb, to));
        p.write(&mut self.octx).av(|| self.context.clone())?;
        Ok(())
    }

    /// Writes a video packet (Annex B) into the current segment.
    pub fn write_video(&mut self, pkt: &Packet) -> Result<()> {
        self.write(pkt, self.video_tb, 0)
    }

    /// Writes a raw AAC packet into the current segment.
    pub fn write_audio(&mut self, pkt: &Packet) -> Result<()> {
        let tb = self
            .audio_tb
            .ok_or_else(|| PackageError::Manifest("audio packet for video-only TS".into()))?;
        self.write(pkt, tb, 1)
    }

    /// Flushes buffered PES data into the current segment and closes it; returns its size.
    pub fn finish_segment(&mut self) -> Result<u64> {
        // SAFETY: a NULL packet asks an AVFMT_ALLOW_FLUSH muxer to flush; pb is our StreamIo.
        unsafe {
            let oc = self.octx.as_mut_ptr();
            let r = ffi::av_write_frame(oc, std::ptr::null_mut());
            if r < 0 {
                return Err(av_err(&self.context, r));
            }
            ffi::avio_flush((*oc).pb);
        }
        self.close_file()
    }

    fn close_file(&mut self) -> Result<u64> {
        let path = self.current.take().unwrap_or_else(|| self.dir.clone());
        let mut s = self.sink.0.lock().map_err(|_| PackageError::Aborted)?;
        let bytes = s.bytes;
        if let Some(mut f) = s.file.take() {
            f.flush().write_ctx(&path)?;
        }
        Ok(bytes)
    }

    /// Writes the trailer into the last segment and closes it; returns its size.
    pub fn finish(mut self) -> Result<u64> {
        self.octx.write_trailer().av(|| self.context.clone())?;
        // SAFETY: pb is our StreamIo, still alive inside octx.
        unsafe { ffi::avio_flush((*self.octx.as_mut_ptr()).pb) };
        self.close_file()
    }
}

fn av_err(context: &str, code: i32) -> PackageError {
    PackageError::Av {
        context: context.to_string(),
        source: ff::Error::from(code),
    }
}
