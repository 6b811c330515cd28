//! Which rungs: the default ladder, the TOML ladder file, and fitting a ladder to a source.
//!
//! Ladder file format (all keys optional; see `docs/ladder.example.toml`):
//! ```toml
//! preset = "veryfast"         # x264 preset for every rung
//! [[video]]
//! height = 720                # short side of the rung, in pixels
//! bitrate_kbps = 3000         # target; maxrate = 1.1×, bufsize = 2× unless given
//! # maxrate_kbps = 3300
//! # bufsize_kbps = 6000
//! # name = "720p"
//! [audio]
//! bitrate_kbps = 128
//! sample_rate = 48000
//! channels = 2
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{PackageError, Result};

/// x264 preset used when the ladder does not name one. `veryfast` keeps a 2-core machine near
/// 1× realtime for a full 1080p ladder while VBV-capped bitrates keep quality predictable.
pub const DEFAULT_PRESET: &str = "veryfast";

/// One video rung as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRungSpec {
    /// Name (directory and representation id); default `<height>p`.
    pub name: Option<String>,
    /// Short side in pixels (height for landscape sources).
    pub height: u32,
    /// Target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// VBV max rate in kbit/s (default 1.1 × bitrate).
    pub maxrate_kbps: Option<u32>,
    /// VBV buffer in kbit (default 2 × bitrate).
    pub bufsize_kbps: Option<u32>,
}

/// Audio settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioSpec {
    /// AAC-LC bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Output sample rate.
    pub sample_rate: u32,
    /// Output channels (1 or 2).
    pub channels: u32,
}

impl Default for AudioSpec {
    fn default() -> Self {
        AudioSpec {
            bitrate_kbps: 128,
            sample_rate: 48000,
            channels: 2,
        }
    }
}

/// A whole ladder as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LadderSpec {
    /// x264 preset.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// Video rungs, any order.
    #[serde(default = "default_video")]
    pub video: Vec<VideoRungSpec>,
    /// Audio settings.
    #[serde(default)]
    pub audio: AudioSpec,
}

fn default_preset() -> String {
    DEFAULT_PRESET.to_string()
}

fn default_video() -> Vec<VideoRungSpec> {
    [
        (1080, 5000),
        (720, 3000),
        (480, 1400),
        (360, 800),
        (240, 400),
    ]
    .into_iter()
    .map(|(height, bitrate_kbps)| VideoRungSpec {
        name: None,
        height,
        bitrate_kbps,
        maxrate_kbps: None,
        bufsize_kbps: None,
    })
    .collect()
}

impl Default for LadderSpec {
    fn default() -> Self {
        LadderSpec {
            preset: default_preset(),
            video: default_video(),
            audio: AudioSpec::default(),
        }
    }
}

const PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

impl LadderSpec {
    /// Parses and validates a TOML ladder.
    pub fn from_toml(text: &str) -> Result<Self> {
        let spec: LadderSpec = toml::from_str(text)
            .map_err(|e| PackageError::Ladder(e.to_string().replace('\n', " ")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks values are in range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PackageError::Ladder(m));
        if !PRESETS.contains(&self.preset.as_str()) {
            return bad(format!("unknown x264 preset '{}'", self.preset));
        }
        if self.video.is_empty() {
            return bad("at least one [[video]] rung is required".into());
        }
        for r in &self.video {
            if !(16..=4320).contains(&r.height) {
                return bad(format!("rung height {} out of range 16..=4320", r.height));
            }
            if !(32..=200_000).contains(&r.bitrate_kbps) {
                return bad(format!(
                    "rung bitrate {} kb/s out of range 32..=200000",
                    r.bitrate_kbps
                ));
            }
            if let Some(name) = &r.name {
                let ok = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return bad(format!(
                        "rung name '{name}' must be 1-64 chars of [A-Za-z0-9_-]"
                    ));
                }
            }
        }
        let a = &self.audio;
        if !(32..=512).contains(&a.bitrate_kbps) {
            return bad(format!(
                "audio bitrate {} kb/s out of range 32..=512",
                a.bitrate_kbps
            ));
        }
        if ![22050, 24000, 32000, 44100, 48000].contains(&a.sample_rate) {
            return bad(format!(
                "audio sample rate {} not one of 22050/24000/32000/44100/48000",
                a.sample_rate
            ));
        }
        if !(1..=2).contains(&a.channels) {
            return bad(format!("audio channels {} must be 1 or 2", a.channels));
        }
        Ok(())
    }
}

/// A rung fitted to the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    /// Directory / representation name.
    pub name: String,
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Target bitrate, bit/s.
    pub bitrate: u64,
    /// VBV max rate, bit/s.
    pub maxrate: u64,
    /// VBV buffer, bits.
    pub bufsize: u64,
}

fn even_round(v: f64) -> u32 {
    let r = (v / 2.0).round() as u32 * 2;
    r.max(2)
}

/// Fits `spec` to a source of display size `(dw, dh)`: never upscales, keeps the display aspect,
/// even dimensions, square pixels; the short side of the picture is the rung's nominal height.
/// Duplicate sizes are dropped. A source smaller than every rung gets one rung at its own size.
pub fn fit(spec: &LadderSpec, display: (f64, f64)) -> Vec<Rung> {
    let (dw, dh) = display;
    let portrait = dh > dw;
    let short = dw.min(dh);
    let aspect = dw.max(dh) / short;
    let mut specs: Vec<&VideoRungSpec> = spec.video.iter().collect();
    specs.sort_by(|a, b| {
        b.height
            .cmp(&a.height)
            .then(b.bitrate_kbps.cmp(&a.bitrate_kbps))
    });
    let make = |s: &VideoRungSpec, short_px: u32| {
        let short_px = short_px - short_px % 2;
        let long_px = even_round(short_px as f64 * aspect);
        let (width, height) = if portrait {
            (short_px, long_px)
        } else {
            (long_px, short_px)
        };
        let bitrate = u64::from(s.bitrate_kbps) * 1000;
        Rung {
            name: s.name.clone().unwrap_or_else(|| format!("{short_px}p")),
            width,
            height,
            bitrate,
            maxrate: s
                .maxrate_kbps
                .map_or(bitrate * 11 / 10, |k| u64::from(k) * 1000),
            bufsize: s.bufsize_kbps.map_or(bitrate * 2, |k| u64::from(k) * 1000),
        }
    };
    let mut rungs: Vec<Rung> = Vec::new();
    for s in &specs {
        if f64::from(s.height) <= short + 0.5 {
            let r = make(s, s.height);
            if !rungs
                .iter()
                .any(|x| x.width == r.width && x.height == r.height || x.name == r.name)
            {
                rungs.push(r);
            }
        }
    }
    if rungs.is_empty() {
        // Smaller than every rung: one rung at source size with the smallest rung's bitrate.
        if let Some(s) = specs.last() {
            let mut r = make(s, (short.floor() as u32).max(2));
            if s.name.is_none() {
                r.name = format!("{}p", r.width.min(r.height));
            }
            rungs.push(r);
        }
    }
    rungs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ladder_for_1080p() {
        let r = fit(&LadderSpec::default(), (1920.0, 1080.0));
        let dims: Vec<_> = r
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height))
            .collect();
        assert_eq!(
            dims,
            [
                ("1080p", 1920, 1080),
                ("720p", 1280, 720),
                ("480p", 854, 480),
                ("360p", 640, 360),
                ("240p", 426, 240)
            ]
        );
        assert_eq!(r[0].maxrate, 5_500_000);
        assert_eq!(r[0].bufsize, 10_000_000);
    }

    #[test]
    fn never_upscales_and_keeps_aspect() {
        // 853x480 with SAR 3:2 displays as 1279.5x480.
        let r = fit(&LadderSpec::default(), (853.0 * 1.5, 480.0));
        assert_eq!(r[0].name, "480p");
        assert_eq!((r[0].width, r[0].height), (1280, 480));
        assert!(r.iter().all(|r| r.width % 2 == 0 && r.height % 2 == 0));
        // Portrait: short side is the width.
        let p = fit(&LadderSpec::default(), (720.0, 1280.0));
        assert_eq!(
            (p[0].name.as_str(), p[0].width, p[0].height),
            ("720p", 720, 1280)
        );
        // Tiny source: one rung at its own size.
        let t = fit(&LadderSpec::default(), (320.0, 180.0));
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].width, t[0].height, t[0].name.as_str()),
            (320, 180, "180p")
        );
    }

    #[test]
    fn toml_parses_and_validates() {
        let s = LadderSpec::from_toml(
            "preset = \"ultrafast\"\n[[video]]\nheight = 360\nbitrate_kbps = 700\n[audio]\nbitrate_kbps = 96\n",
        )
        .unwrap();
        assert_eq!(s.video.len(), 1);
        assert_eq!(s.audio.bitrate_kbps, 96);
        assert_eq!(s.audio.sample_rate, 48000);
        assert!(LadderSpec::from_toml("preset = \"warp\"").is_err());
        assert!(LadderSpec::from_toml("[[video]]\nheight = 360\n").is_err());
        assert!(LadderSpec::from_toml("[[video]]\nheight = 360\nbitrate_kbps = 1\n").is_err());
        assert!(
            LadderSpec::from_toml("[[video]]\nheight=360\nbitrate_kbps=500\nname=\"../x\"")
                .is_err()
        );
        assert!(LadderSpec::from_toml("bogus = 1").is_err());
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    /// The documented example ladder is the default ladder spelled out.
    #[test]
    fn docs_example_equals_default() {
        let text = include_str!("../../docs/ladder.example.toml");
        let mut spec = LadderSpec::from_toml(text).unwrap();
        for r in &mut spec.video {
            r.name = None;
        }
        assert_eq!(spec, LadderSpec::default());
    }
}
