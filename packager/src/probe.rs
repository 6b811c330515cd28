//! What the input is: opens it with libavformat and describes its video and audio streams.

use std::path::{Path, PathBuf};

use ff::{format, media, Rational};
use ffmpeg_next as ff;

use crate::error::{PackageError, Result};
use crate::package::Ratio;

/// The chosen video stream of the input.
#[derive(Debug, Clone)]
pub struct VideoSource {
    /// Stream index in the container.
    pub index: usize,
    /// Codec name (e.g. `h264`).
    pub codec: String,
    /// Coded width.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// Sample aspect ratio (1:1 when unknown).
    pub sar: Ratio,
    /// Clockwise rotation to apply for display, in degrees (0, 90, 180, 270).
    pub rotation: u32,
    /// Output frame rate (constant): the stream's average rate, bounded to ≤ 60 fps.
    pub frame_rate: Ratio,
    /// Source pixel format name (e.g. `yuv420p10le`).
    pub pixel_format: String,
    /// Stream time base.
    pub time_base: Rational,
}

impl VideoSource {
    /// Display size after applying SAR and rotation: (width, height), not rounded.
    pub fn display_size(&self) -> (f64, f64) {
        let w = self.width as f64 * self.sar.as_f64();
        let h = self.height as f64;
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }
}

/// The chosen audio stream of the input.
#[derive(Debug, Clone)]
pub struct AudioSource {
    /// Stream index in the container.
    pub index: usize,
    /// Codec name.
    pub codec: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
    /// Stream time base.
    pub time_base: Rational,
}

/// Description of an input file.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Input path.
    pub path: PathBuf,
    /// Container format name.
    pub format: String,
    /// Duration in seconds (container or video stream), 0 when unknown.
    pub duration_secs: f64,
    /// Video stream.
    pub video: VideoSource,
    /// Audio stream, if any.
    pub audio: Option<AudioSource>,
}

/// Opens `path` and describes it. Every failure is a one-line [`PackageError`].
pub fn probe(path: &Path) -> Result<Probe> {
    let meta = std::fs::metadata(path).map_err(|source| PackageError::InputUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(PackageError::InputUnreadable {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a directory"),
        });
    }
    // Open for reading first so permission errors read as such, not as "not media".
    std::fs::File::open(path).map_err(|source| PackageError::InputUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() == 0 {
        return Err(PackageError::InputEmpty(path.to_path_buf()));
    }
    crate::init();
    let input = format::input(path).map_err(|e| PackageError::NotMedia {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    describe(path, &input)
}

/// Describes an already opened input.
pub(crate) fn describe(path: &Path, input: &format::context::Input) -> Result<Probe> {
    let not_media = |reason: &str| PackageError::NotMedia {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if input.nb_streams() == 0 {
        return Err(not_media("no streams found"));
    }
    let vstream = input
        .streams()
        .filter(|s| s.parameters().medium() == media::Type::Video)
        // Cover art is an attached picture, not a video track.
        .find(|s| {
            !s.disposition()
                .contains(format::stream::Disposition::ATTACHED_PIC)
        })
        .ok_or_else(|| PackageError::NoVideo(path.to_path_buf()))?;
    let vpar = vstream.parameters();
    let vcodec = vpar.id();
    let vname = codec_name(vcodec);
    if vcodec == ff::codec::Id::None || ff::decoder::find(vcodec).is_none() {
        return Err(PackageError::UnknownCodec {
            path: path.to_path_buf(),
            kind: "video",
            codec: vname,
        });
    }
    // SAFETY: codecpar is valid for the lifetime of the stream.
    let (width, height, sar, fmt) = unsafe {
        let p = *vpar.as_ptr();
        (p.width, p.height, p.sample_aspect_ratio, p.format)
    };
    if width <= 0 || height <= 0 {
        return Err(not_media("video stream has no frame size"));
    }
    let sar = if sar.num > 0 && sar.den > 0 {
        Ratio {
            num: sar.num as u32,
            den: sar.den as u32,
        }
    } else {
        Ratio { num: 1, den: 1 }
    };
    let pixel_format = unsafe {
        let name =
            ff::ffi::av_get_pix_fmt_name(std::mem::transmute::<i32, ff::ffi::AVPixelFormat>(fmt));
        if name.is_null() {
            "unknown".to_string()
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    };
    let rotation = stream_rotation(&vstream);
    let frame_rate = output_frame_rate(vstream.avg_frame_rate(), vstream.rate())
        .ok_or_else(|| not_media("video stream has no usable frame rate"))?;

    let audio = input
        .streams()
        .filter(|s| s.parameters().medium() == media::Type::Audio)
        .find_map(|s| {
            let par = s.parameters();
            let id = par.id();
            let (rate, channels) = unsafe {
                let p = *par.as_ptr();
                (p.sample_rate, p.ch_layout.nb_channels)
            };
            (ff::decoder::find(id).is_some() && rate > 0 && channels > 0).then(|| AudioSource {
                index: s.index(),
                codec: codec_name(id),
                sample_rate: rate as u32,
                channels: channels as u32,
                time_base: s.time_base(),
            })
        });

    let stream_secs = {
        let tb = vstream.time_base();
        let d = vstream.duration();
        if d > 0 && tb.denominator() != 0 {
            d as f64 * f64::from(tb)
        } else {
            0.0
        }
    };
    let container_secs = if input.duration() > 0 {
        input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let duration_secs = if stream_secs > 0.0 {
        stream_secs
    } else {
        container_secs
    };

    Ok(Probe {
        path: path.to_path_buf(),
        format: input.format().name().to_string(),
        duration_secs,
        video: VideoSource {
            index: vstream.index(),
            codec: vname,
            width: width as u32,
            height: height as u32,
            sar,
            rotation,
            frame_rate,
            pixel_format,
            time_base: vstream.time_base(),
        },
        audio,
    })
}

fn codec_name(id: ff::codec::Id) -> String {
    let name = id.name();
    if name.is_empty() || id == ff::codec::Id::None {
        "none".to_string()
    } else {
        name.to_string()
    }
}

/// Clockwise display rotation from the stream's display matrix, as ffmpeg's autorotate reads it.
fn stream_rotation(stream: &format::stream::Stream) -> u32 {
    for sd in stream.side_data() {
        if sd.kind() == ff::codec::packet::side_data::Type::DisplayMatrix && sd.data().len() >= 36 {
            // SAFETY: the display matrix is nine int32 values; length checked above.
            let theta =
                unsafe { ff::ffi::av_display_rotation_get(sd.data().as_ptr() as *const i32) };
            if theta.is_nan() {
                return 0;
            }
            let cw = (-theta).rem_euclid(360.0);
            return ((cw / 90.0).round() as u32 % 4) * 90;
        }
    }
    0
}

/// Picks a constant output frame rate: the average rate when it is (near) a standard rate; for
/// irregular (VFR) averages the stream's base rate when sane, else the rounded average. Rates above
/// 60 fps are halved until they fit (high-rate sources are packaged at half rate).
pub(crate) fn output_frame_rate(avg: Rational, base: Rational) -> Option<Ratio> {
    let valid = |r: Rational| {
        r.numerator() > 0 && r.denominator() > 0 && (1.0..=1000.0).contains(&f64::from(r))
    };
    const STANDARD: [(u64, u64); 9] = [
        (24000, 1001),
        (24, 1),
        (25, 1),
        (30000, 1001),
        (30, 1),
        (48, 1),
        (50, 1),
        (60000, 1001),
        (60, 1),
    ];
    // The closest standard rate within 0.05 % (29.97 and 30 are 0.1 % apart).
    let snap = |r: Rational| {
        let v = f64::from(r);
        let err = |(n, d): (u64, u64)| ((n as f64 / d as f64) - v).abs() / v;
        STANDARD
            .iter()
            .copied()
            .filter(|s| err(*s) < 0.0005)
            .min_by(|a, b| err(*a).total_cmp(&err(*b)))
    };
    let (mut num, mut den) = if valid(avg) {
        match snap(avg) {
            Some(s) => s,
            None if valid(base) && f64::from(base) >= f64::from(avg) => {
                snap(base).unwrap_or((base.numerator() as u64, base.denominator() as u64))
            }
            None => ((f64::from(avg).round().max(1.0)) as u64, 1),
        }
    } else if valid(base) {
        snap(base).unwrap_or((base.numerator() as u64, base.denominator() as u64))
    } else {
        return None;
    };
    if den > 1001 {
        num = (num as f64 / den as f64).round().max(1.0) as u64;
        den = 1;
    }
    while num as f64 / den as f64 > 60.5 {
        if num % 2 == 0 {
            num /= 2
        } else {
            den *= 2
        }
    }
    Some(Ratio {
        num: u32::try_from(num).ok()?,
        den: u32::try_from(den).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rate_choice() {
        let r = |n, d| Rational::new(n, d);
        assert_eq!(
            output_frame_rate(r(30000, 1001), r(30000, 1001)),
            Some(Ratio {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(
            output_frame_rate(r(24, 1), r(24, 1)),
            Some(Ratio { num: 24, den: 1 })
        );
        assert_eq!(
            output_frame_rate(r(30, 1), r(30, 1)),
            Some(Ratio { num: 30, den: 1 })
        );
        assert_eq!(
            output_frame_rate(r(2997003, 100000), r(30, 1)),
            Some(Ratio {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(
            output_frame_rate(r(0, 0), r(25, 1)),
            Some(Ratio { num: 25, den: 1 })
        );
        assert_eq!(
            output_frame_rate(r(120, 1), r(120, 1)),
            Some(Ratio { num: 60, den: 1 })
        );
        assert_eq!(output_frame_rate(r(0, 1), r(0, 1)), None);
        assert_eq!(
            output_frame_rate(r(1234567, 100000), r(90000, 1)),
            Some(Ratio { num: 12, den: 1 })
        );
        // VFR: irregular average, sane base rate.
        assert_eq!(
            output_frame_rate(r(600, 29), r(30, 1)),
            Some(Ratio { num: 30, den: 1 })
        );
        assert_eq!(
            output_frame_rate(r(25, 1), r(50, 1)),
            Some(Ratio { num: 25, den: 1 })
        );
    }
}
