//! Decoding the source: video through rotation and constant-frame-rate filters, audio through
//! resampling into fixed 1024-sample frames for the AAC encoder.

use ff::{filter, format, frame, Rational};
use ffmpeg_next as ff;

use crate::error::{AvContext, PackageError, Result};

/// A decoder followed by a filter graph whose graph is built from the first decoded frame.
struct Filtered {
    decoder: ff::decoder::Opened,
    graph: Option<(filter::Graph, String)>,
    /// Time offset (in the stream time base) subtracted from every frame before filtering.
    origin: i64,
    /// End time of the latest frame seen (pts + duration), for closing the graph at EOF.
    end: Option<i64>,
    context: String,
}

fn open_decoder(stream: &format::stream::Stream, context: &str) -> Result<ff::decoder::Opened> {
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .av(|| context.to_string())?;
    // SAFETY: plain field writes on a context we own, before opening it.
    unsafe {
        let c = ctx.as_mut_ptr();
        (*c).thread_count = 0; // auto
        (*c).thread_type = ff::ffi::FF_THREAD_FRAME | ff::ffi::FF_THREAD_SLICE;
        (*c).pkt_timebase = stream.time_base().into();
    }
    let codec = ff::decoder::find(ctx.id()).ok_or_else(|| PackageError::Av {
        context: format!("{context}: no decoder"),
        source: ff::Error::DecoderNotFound,
    })?;
    ctx.decoder()
        .open_as(codec)
        .av(|| format!("{context}: opening decoder"))
}

impl Filtered {
    fn send(&mut self, pkt: Option<&ff::Packet>) -> Result<()> {
        let r = match pkt {
            Some(p) => self.decoder.send_packet(p),
            None => self.decoder.send_eof(),
        };
        match r {
            Ok(()) => Ok(()),
            // Corrupt packets are skipped the way players do; truncation is judged by duration.
            Err(ff::Error::InvalidData) => {
                tracing::debug!("{}: skipping undecodable packet", self.context);
                Ok(())
            }
            Err(e) => Err(PackageError::Av {
                context: self.context.clone(),
                source: e,
            }),
        }
    }

    /// Pulls decoded frames, pushes them through the graph (built by `spec` on the first frame),
    /// and hands filtered frames to `out`.
    fn pump(
        &mut self,
        spec: &dyn Fn(&frame::Frame) -> Result<(filter::Graph, String)>,
        eof: bool,
        out: &mut dyn FnMut(frame::Frame) -> Result<()>,
    ) -> Result<()> {
        loop {
            let mut f = unsafe { frame::Frame::empty() };
            match self.decoder.receive_frame(&mut f) {
                Ok(()) => {
                    let ts = f.timestamp().or(f.pts());
                    f.set_pts(ts.map(|t| t - self.origin));
                    // SAFETY: reading a plain field of a decoded frame.
                    let dur = unsafe { (*f.as_ptr()).pkt_duration };
                    if let Some(t) = f.pts() {
                        self.end = Some(self.end.unwrap_or(i64::MIN).max(t + dur.max(0)));
                    }
                    if self.graph.is_none() {
                        self.graph = Some(spec(&f)?);
                    }
                    if let Some((g, _)) = self.graph.as_mut() {
                        let mut src = g.get("in").ok_or(PackageError::Aborted)?;
                        src.source()
                            .add(&f)
                            .av(|| format!("{}: filter input", self.context))?;
                    }
                    self.drain_graph(out)?;
                }
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(ff::Error::InvalidData) => {
                    tracing::debug!("{}: skipping undecodable frame", self.context);
                }
                Err(e) => {
                    return Err(PackageError::Av {
                        context: self.context.clone(),
                        source: e,
                    })
                }
            }
        }
        if eof {
            if let Some((g, _)) = self.graph.as_mut() {
                let mut src = g.get("in").ok_or(PackageError::Aborted)?;
                // Close at the end of the last frame (not its start) so the fps filter keeps it.
                match self.end {
                    Some(end) => src.source().close(end),
                    None => src.source().flush(),
                }
                .av(|| format!("{}: filter flush", self.context))?;
            }
            self.drain_graph(out)?;
        }
        Ok(())
    }

    fn drain_graph(&mut self, out: &mut dyn FnMut(frame::Frame) -> Result<()>) -> Result<()> {
        let Some((g, _)) = self.graph.as_mut() else {
            return Ok(());
        };
        let mut sink = g.get("out").ok_or(PackageError::Aborted)?;
        loop {
            let mut f = unsafe { frame::Frame::empty() };
            match sink.sink().frame(&mut f) {
                Ok(()) => out(f)?,
                Err(ff::Error::Other { errno }) if errno == ff::ffi::EAGAIN => return Ok(()),
                Err(ff::Error::Eof) => return Ok(()),
                Err(e) => {
                    return Err(PackageError::Av {
                        context: format!("{}: filter", self.context),
                        source: e,
                    })
                }
            }
        }
    }
}

fn build_graph(
    src_filter: &str,
    src_args: &str,
    chain: &str,
    sink_filter: &str,
    context: &str,
    configure_sink: impl FnOnce(&mut filter::Context),
) -> Result<(filter::Graph, String)> {
    let err = |e| PackageError::Av {
        context: format!("{context}: filter graph '{chain}'"),
        source: e,
    };
    let mut g = filter::Graph::new();
    let src = filter::find(src_filter).ok_or(err(ff::Error::FilterNotFound))?;
    let snk = filter::find(sink_filter).ok_or(err(ff::Error::FilterNotFound))?;
    g.add(&src, "in", src_args).map_err(err)?;
    g.add(&snk, "out", "").map_err(err)?;
    g.output("in", 0)
        .map_err(err)?
        .input("out", 0)
        .map_err(err)?
        .parse(chain)
        .map_err(err)?;
    g.validate().map_err(err)?;
    // The sink's input link exists only once the graph is configured.
    if let Some(mut s) = g.get("out") {
        configure_sink(&mut s);
    }
    Ok((g, chain.to_string()))
}

/// Decodes the video stream into upright frames whose `pts` is the stream time after `origin`.
pub struct VideoDecoder {
    inner: Filtered,
    time_base: Rational,
    rotation: u32,
}

impl VideoDecoder {
    /// Opens the decoder for `stream`, rotating by `rotation` degrees clockwise; `origin`
    /// (stream time base) becomes time zero.
    pub fn new(stream: &format::stream::Stream, rotation: u32, origin: i64) -> Result<Self> {
        let context = format!("video stream #{}", stream.index());
        let decoder = open_decoder(stream, &context)?;
        Ok(VideoDecoder {
            inner: Filtered {
                decoder,
                graph: None,
                origin,
                end: None,
                context,
            },
            time_base: stream.time_base(),
            rotation,
        })
    }

    /// End time (pts + duration, after `origin`) of the latest frame decoded so far.
    pub fn end(&self) -> Option<i64> {
        self.inner.end
    }

    /// Feeds a packet (None at end of stream) and emits every frame that becomes ready.
    pub fn push(
        &mut self,
        pkt: Option<&ff::Packet>,
        out: &mut dyn FnMut(frame::Video) -> Result<()>,
    ) -> Result<()> {
        self.inner.send(pkt)?;
        let (tb, rot) = (self.time_base, self.rotation);
        let ctx = self.inner.context.clone();
        let spec = move |f: &frame::Frame| -> Result<(filter::Graph, String)> {
            // SAFETY: reading plain fields of a decoded frame.
            let (w, h, fmt, sar) = unsafe {
                let p = f.as_ptr();
                (
                    (*p).width,
                    (*p).height,
                    (*p).format,
                    (*p).sample_aspect_ratio,
                )
            };
            let sar = if sar.num > 0 && sar.den > 0 {
                (sar.num, sar.den)
            } else {
                (1, 1)
            };
            let args = format!(
                "video_size={w}x{h}:pix_fmt={fmt}:time_base={}/{}:pixel_aspect={}/{}",
                tb.numerator(),
                tb.denominator(),
                sar.0,
                sar.1
            );
            // Rotation only: the constant frame rate is chosen from these frames' timestamps by
            // `cfr::CfrMapper`, so a shard decoding from a mid-stream keyframe picks the frames a
            // whole-source run picks.
            let chain = match rot {
                90 => "transpose=clock",
                180 => "hflip,vflip",
                270 => "transpose=cclock",
                _ => "null",
            };
            build_graph("buffer", &args, chain, "buffersink", &ctx, |_| {})
        };
        let eof = pkt.is_none();
        self.inner
            .pump(&spec, eof, &mut |f| out(frame::Video::from(f)))
    }
}

/// Output audio format fed to the AAC encoder.
#[derive(Debug, Clone, Copy)]
pub struct AudioFormat {
    /// Sample rate.
    pub sample_rate: u32,
    /// Channels (1 or 2).
    pub channels: u32,
}

/// Decodes the audio stream into planar-float frames of exactly 1024 samples at the target
/// rate, starting at time zero (padded with silence or trimmed to meet the video's start).
pub struct AudioDecoder {
    inner: Filtered,
    time_base: Rational,
    target: AudioFormat,
}

impl AudioDecoder {
    /// Opens the decoder; `origin` is in the audio stream's time base.
    pub fn new(stream: &format::stream::Stream, origin: i64, target: AudioFormat) -> Result<Self> {
        let context = format!("audio stream #{}", stream.index());
        let decoder = open_decoder(stream, &context)?;
        Ok(AudioDecoder {
            inner: Filtered {
                decoder,
                graph: None,
                origin,
                end: None,
                context,
            },
            time_base: stream.time_base(),
            target,
        })
    }

    /// Feeds a packet (None at end) and emits every 1024-sample frame that becomes ready.
    pub fn push(
        &mut self,
        pkt: Option<&ff::Packet>,
        out: &mut dyn FnMut(frame::Audio) -> Result<()>,
    ) -> Result<()> {
        self.inner.send(pkt)?;
        let (tb, t) = (self.time_base, self.target);
        let ctx = self.inner.context.clone();
        let spec = move |f: &frame::Frame| -> Result<(filter::Graph, String)> {
            // SAFETY: reading plain fields of a decoded frame.
            let (rate, fmt, nch) = unsafe {
                let p = f.as_ptr();
                ((*p).sample_rate, (*p).format, (*p).ch_layout.nb_channels)
            };
            let fmt_name = unsafe {
                let n = ff::ffi::av_get_sample_fmt_name(std::mem::transmute::<
                    i32,
                    ff::ffi::AVSampleFormat,
                >(fmt));
                if n.is_null() {
                    "fltp".into()
                } else {
                    std::ffi::CStr::from_ptr(n).to_string_lossy().into_owned()
                }
            };
            let layout = channel_layout_name(f).unwrap_or_else(|| format!("{nch}c"));
            let args = format!(
                "time_base={}/{}:sample_rate={rate}:sample_fmt={fmt_name}:channel_layout={layout}",
                tb.numerator(),
                tb.denominator()
            );
            let out_layout = if t.channels == 1 { "mono" } else { "stereo" };
            let chain = format!(
                "aresample={}:async=1:first_pts=0,aformat=sample_fmts=fltp:sample_rates={}:channel_layouts={out_layout}",
                t.sample_rate, t.sample_rate
            );
            build_graph("abuffer", &args, &chain, "abuffersink", &ctx, |s| {
                s.sink().set_frame_size(1024)
            })
        };
        let eof = pkt.is_none();
        self.inner
            .pump(&spec, eof, &mut |f| out(frame::Audio::from(f)))
    }
}

fn channel_layout_name(f: &frame::Frame) -> Option<String> {
    let mut buf = [0u8; 128];
    // SAFETY: describing the frame's channel layout into a local buffer.
    let n = unsafe {
        ff::ffi::av_channel_layout_describe(
            &(*f.as_ptr()).ch_layout,
            buf.as_mut_ptr() as *mut _,
            buf.len(),
        )
    };
    if n <= 0 || n as usize > buf.len() {
        return None;
    }
    let s = std::ffi::CStr::from_bytes_until_nul(&buf)
        .ok()?
        .to_string_lossy()
        .into_owned();
    (!s.is_empty() && !s.contains(' ')).then_some(s)
}
