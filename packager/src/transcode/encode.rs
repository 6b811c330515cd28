//! Encoders: one libx264 encoder (with its own scaler) per rung, one AAC-LC encoder for audio.

use ff::{ffi, format, frame, software::scaling, Rational};
use ffmpeg_next as ff;

use crate::error::{AvContext, PackageError, Result};
use crate::ladder::Rung;
use crate::package::Ratio;

/// x264 settings shared by every rung, also used by `scripts/bench-packager.sh` for the ffmpeg
/// floor so both sides encode identically.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct X264Settings {
    /// x264 preset.
    pub preset: String,
    /// Keyframe interval upper bound in frames (longer than any segment: only forced IDRs occur).
    pub keyint: u64,
    /// Encoder threads, fixed by the plan because x264's output depends on them; this build's
    /// plans say one ([`crate::plan::X264_THREADS`] says why). More are run as slices of each
    /// frame, as a plan asks.
    pub threads: u32,
}

impl X264Settings {
    /// The `x264-params` string: no scene-cut keyframes, closed GOPs, fixed keyint, and sliced
    /// threads when the plan asks for several.
    pub fn params(&self) -> String {
        let sliced = if self.threads > 1 {
            "sliced-threads=1:"
        } else {
            ""
        };
        format!(
            "{sliced}scenecut=0:open-gop=0:keyint={k}:min-keyint={k}",
            k = self.keyint
        )
    }
}

/// Scales shared decoded frames to one rung and encodes them with libx264.
pub struct RungEncoder {
    encoder: ff::encoder::video::Encoder,
    scaler: Option<(scaling::Context, (format::Pixel, u32, u32))>,
    scaled: frame::Video,
    rung: Rung,
    context: String,
}

impl RungEncoder {
    /// Opens libx264 for `rung` at `frame_rate`; timestamps are frame indices (time base 1/fps).
    pub fn new(rung: &Rung, frame_rate: Ratio, x264: &X264Settings) -> Result<Self> {
        let context = format!("rendition {}", rung.name);
        let codec = ff::encoder::find_by_name("libx264").ok_or_else(|| PackageError::Av {
            context: format!("{context}: libx264 encoder not available in this libavcodec"),
            source: ff::Error::EncoderNotFound,
        })?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .av(|| context.clone())?;
        enc.set_width(rung.width);
        enc.set_height(rung.height);
        enc.set_format(format::Pixel::YUV420P);
        enc.set_time_base(Rational::new(frame_rate.den as i32, frame_rate.num as i32));
        enc.set_frame_rate(Some(Rational::new(
            frame_rate.num as i32,
            frame_rate.den as i32,
        )));
        enc.set_aspect_ratio(Rational::new(1, 1));
        enc.set_bit_rate(rung.bitrate as usize);
        enc.set_max_bit_rate(rung.maxrate as usize);
        enc.set_gop(x264.keyint as u32);
        // SAFETY: field writes on an encoder context we own, before opening it.
        unsafe {
            let c = enc.as_mut_ptr();
            (*c).thread_count = x264.threads.max(1) as i32;
            (*c).rc_buffer_size = i32::try_from(rung.bufsize).unwrap_or(i32::MAX);
            (*c).colorspace = ffi::AVColorSpace::AVCOL_SPC_BT709;
            (*c).color_primaries = ffi::AVColorPrimaries::AVCOL_PRI_BT709;
            (*c).color_trc = ffi::AVColorTransferCharacteristic::AVCOL_TRC_BT709;
            (*c).color_range = ffi::AVColorRange::AVCOL_RANGE_MPEG;
        }
        let mut opts = ff::Dictionary::new();
        opts.set("preset", &x264.preset);
        opts.set("profile", "high");
        opts.set("forced-idr", "1");
        opts.set("x264-params", &x264.params());
        let encoder = enc
            .open_with(opts)
            .av(|| format!("{context}: opening libx264"))?;
        let scaled = frame::Video::new(format::Pixel::YUV420P, rung.width, rung.height);
        Ok(RungEncoder {
            encoder,
            scaler: None,
            scaled,
            rung: rung.clone(),
            context,
        })
    }

    /// Scales `src` and encodes it as output frame `index`, forcing an IDR when `idr`.
    pub fn encode(
        &mut self,
        src: &frame::Video,
        index: u64,
        idr: bool,
        sink: impl FnMut(ff::Packet) -> Result<()>,
    ) -> Result<()> {
        let key = (src.format(), src.width(), src.height());
        if self.scaler.as_ref().map(|(_, k)| *k) != Some(key) {
            let ctx = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                format::Pixel::YUV420P,
                self.rung.width,
                self.rung.height,
                // Bit-exact: machines with other SIMD must scale to the same pixels, or a plan's
                // shards run on a mixed farm would not give the same bytes.
                scaling::Flags::BICUBIC | scaling::Flags::BITEXACT | scaling::Flags::ACCURATE_RND,
            )
            .av(|| format!("{}: scaler", self.context))?;
            let mut ctx = ctx;
            set_bt709_output(&mut ctx, src);
            self.scaler = Some((ctx, key));
        }
        // The encoder may still reference the previous picture's buffer: copy-on-write first.
        // SAFETY: scaled is a frame we own.
        let r = unsafe { ffi::av_frame_make_writable(self.scaled.as_mut_ptr()) };
        if r < 0 {
            return Err(PackageError::Av {
                context: self.context.clone(),
                source: ff::Error::from(r),
            });
        }
        if let Some((sws, _)) = self.scaler.as_mut() {
            sws.run(src, &mut self.scaled)
                .av(|| format!("{}: scaling", self.context))?;
        }
        self.scaled.set_pts(Some(index as i64));
        self.scaled.set_kind(if idr {
            ff::picture::Type::I
        } else {
            ff::picture::Type::None
        });
        self.encoder
            .send_frame(&self.scaled)
            .av(|| format!("{}: encoding", self.context))?;
        super::drain_packets(&mut self.encoder, sink)
    }

    /// Flushes the encoder at end of stream.
    pub fn finish(&mut self, sink: impl FnMut(ff::Packet) -> Result<()>) -> Result<()> {
        self.encoder
            .send_eof()
            .av(|| format!("{}: flushing", self.context))?;
        super::drain_packets(&mut self.encoder, sink)
    }
}

/// AAC-LC encoder (FFmpeg's native `aac`), fed 1024-sample planar float frames.
pub struct AacEncoder {
    encoder: ff::encoder::audio::Encoder,
    /// AudioSpecificConfig from the encoder's global header.
    pub asc: Vec<u8>,
    /// Output sample rate (the time base is 1/sample_rate).
    pub sample_rate: u32,
    /// Output channels.
    pub channels: u32,
}

impl AacEncoder {
    /// Opens the encoder.
    pub fn new(sample_rate: u32, channels: u32, bitrate: u64) -> Result<Self> {
        let context = "AAC encoder".to_string();
        let codec = ff::encoder::find(ff::codec::Id::AAC).ok_or_else(|| PackageError::Av {
            context: context.clone(),
            source: ff::Error::EncoderNotFound,
        })?;
        let mut enc = ff::codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .av(|| context.clone())?;
        enc.set_rate(sample_rate as i32);
        enc.set_format(format::Sample::F32(format::sample::Type::Planar));
        enc.set_bit_rate(bitrate as usize);
        enc.set_time_base(Rational::new(1, sample_rate as i32));
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        // SAFETY: setting the channel layout on an unopened context we own.
        unsafe {
            ffi::av_channel_layout_default(&mut (*enc.as_mut_ptr()).ch_layout, channels as i32);
        }
        let encoder = enc.open().av(|| format!("{context}: opening"))?;
        // SAFETY: extradata is owned by the opened context; we copy it out.
        let asc = unsafe {
            let c = encoder.as_ptr();
            if (*c).extradata.is_null() || (*c).extradata_size <= 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts((*c).extradata, (*c).extradata_size as usize).to_vec()
            }
        };
        if asc.len() < 2 {
            return Err(PackageError::Av {
                context: format!("{context}: no AudioSpecificConfig"),
                source: ff::Error::Bug,
            });
        }
        Ok(AacEncoder {
            encoder,
            asc,
            sample_rate,
            channels,
        })
    }

    /// Encodes one frame.
    pub fn encode(
        &mut self,
        f: &frame::Audio,
        sink: impl FnMut(ff::Packet) -> Result<()>,
    ) -> Result<()> {
        self.encoder.send_frame(f).av(|| "AAC encoder".into())?;
        super::drain_packets(&mut self.encoder, sink)
    }

    /// Flushes at end of stream.
    pub fn finish(&mut self, sink: impl FnMut(ff::Packet) -> Result<()>) -> Result<()> {
        self.encoder
            .send_eof()
            .av(|| "AAC encoder: flushing".into())?;
        super::drain_packets(&mut self.encoder, sink)
    }
}

/// Converts the source's YUV matrix and range to the BT.709 limited range the output is tagged
/// with. Untagged sources get the matrix ffmpeg would assume: BT.601 below 720 lines.
fn set_bt709_output(ctx: &mut scaling::Context, src: &frame::Video) {
    // SAFETY: reads plain fields of a frame we borrow and configures a scaler we own.
    unsafe {
        let f = src.as_ptr();
        let cs = match (*f).colorspace {
            ffi::AVColorSpace::AVCOL_SPC_BT709 => ffi::SWS_CS_ITU709,
            ffi::AVColorSpace::AVCOL_SPC_BT470BG | ffi::AVColorSpace::AVCOL_SPC_SMPTE170M => {
                ffi::SWS_CS_ITU601
            }
            ffi::AVColorSpace::AVCOL_SPC_SMPTE240M => ffi::SWS_CS_SMPTE240M,
            ffi::AVColorSpace::AVCOL_SPC_BT2020_NCL | ffi::AVColorSpace::AVCOL_SPC_BT2020_CL => {
                ffi::SWS_CS_BT2020
            }
            _ if (*f).height >= 720 => ffi::SWS_CS_ITU709,
            _ => ffi::SWS_CS_ITU601,
        };
        let full = i32::from((*f).color_range == ffi::AVColorRange::AVCOL_RANGE_JPEG);
        let sws = ctx.as_mut_ptr();
        ffi::sws_setColorspaceDetails(
            sws,
            ffi::sws_getCoefficients(cs),
            full,
            ffi::sws_getCoefficients(ffi::SWS_CS_ITU709),
            0,
            0,
            1 << 16,
            1 << 16,
        );
    }
}
