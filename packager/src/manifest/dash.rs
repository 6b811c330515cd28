//! DASH MPD (ISO/IEC 23009-1), written with dash-mpd-core: a static, single-Period, isoff-live
//! manifest with `$Number$` SegmentTemplates and exact SegmentTimelines.

use std::fmt::Write as _;
use std::time::Duration;

use dash_mpd_core::{
    AdaptationSet, AudioChannelConfiguration, Period, Representation, SegmentTemplate,
    SegmentTimeline, MPD, S,
};

use crate::package::{DashRepresentation, PackageInfo, Ratio, Segment};

/// MPD `@profiles`.
pub const PROFILE: &str = "urn:mpeg:dash:profile:isoff-live:2011";
/// `AudioChannelConfiguration@schemeIdUri` whose value is the plain channel count.
pub const AUDIO_CHANNEL_SCHEME: &str = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011";
/// `SegmentTemplate@initialization`, relative to the MPD.
pub const INIT_TEMPLATE: &str = "$RepresentationID$/init.mp4";
/// `SegmentTemplate@media`, relative to the MPD; matches [`crate::package::segment_file_name`].
pub const MEDIA_TEMPLATE: &str = "$RepresentationID$/seg_$Number%05d$.m4s";

/// Why an MPD could not be written from a [`PackageInfo`].
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// Neither video nor audio representations.
    #[error("no DASH representations to describe")]
    Empty,
    /// A duration in seconds that is negative, NaN or too large.
    #[error("invalid {field}: {value} s")]
    InvalidDuration {
        /// Which `PackageInfo` field.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A representation that cannot be described (missing properties, bad id, no segments…).
    #[error("representation {id:?}: {reason}")]
    InvalidRepresentation {
        /// Representation id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// dash-mpd-core failed to serialise the MPD.
    #[error("MPD serialisation failed")]
    Serialize,
}

/// Writes the static MPD `dash/manifest.mpd`: one Period with a video AdaptationSet (one
/// Representation per `p.dash_video` entry) and, if present, an audio AdaptationSet.
///
/// The SegmentTemplate sits on the AdaptationSet when all its Representations share one timescale
/// and identical segment times; otherwise each Representation carries its own.
pub fn mpd(p: &PackageInfo) -> Result<String, DashError> {
    if p.dash_video.is_empty() && p.dash_audio.is_none() {
        return Err(DashError::Empty);
    }
    let mut adaptations = Vec::new();
    if !p.dash_video.is_empty() {
        adaptations.push(video_adaptation(&p.dash_video)?);
    }
    if let Some(audio) = &p.dash_audio {
        adaptations.push(audio_adaptation(audio)?);
    }
    let mut max_segment = Duration::ZERO;
    for r in p.dash_video.iter().chain(&p.dash_audio) {
        for s in &r.segments {
            max_segment = max_segment.max(ticks_to_duration_ceil(s.duration, r.timescale));
        }
    }
    let mpd = MPD {
        xmlns: Some("urn:mpeg:dash:schema:mpd:2011".into()),
        profiles: Some(PROFILE.into()),
        mpdtype: Some("static".into()),
        mediaPresentationDuration: Some(secs_to_duration("duration_secs", p.duration_secs)?),
        minBufferTime: Some(secs_to_duration(
            "segment_duration_secs",
            2.0 * p.segment_duration_secs,
        )?),
        maxSegmentDuration: Some(max_segment),
        periods: vec![Period {
            id: Some("0".into()),
            start: Some(Duration::ZERO),
            adaptations,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // `write!` rather than `to_string()`: the latter panics if serialisation fails.
    write!(xml, "{mpd}").map_err(|_| DashError::Serialize)?;
    xml.push('\n');
    Ok(xml)
}

fn video_adaptation(reps: &[DashRepresentation]) -> Result<AdaptationSet, DashError> {
    let mut representations = Vec::with_capacity(reps.len());
    let (mut max_width, mut max_height, mut max_rate) = (0, 0, Ratio { num: 0, den: 1 });
    for r in reps {
        check(r)?;
        let v = r
            .video
            .as_ref()
            .ok_or_else(|| invalid(r, "no video properties"))?;
        if v.frame_rate.den == 0 || v.frame_rate.num == 0 {
            return Err(invalid(r, "zero frame rate"));
        }
        max_width = max_width.max(v.width);
        max_height = max_height.max(v.height);
        // a/b > c/d ⇔ a·d > c·b (no rounding).
        if u64::from(v.frame_rate.num) * u64::from(max_rate.den)
            > u64::from(max_rate.num) * u64::from(v.frame_rate.den)
        {
            max_rate = v.frame_rate;
        }
        representations.push(Representation {
            width: Some(v.width.into()),
            height: Some(v.height.into()),
            frameRate: Some(frame_rate(v.frame_rate)),
            sar: Some("1:1".into()),
            ..representation(r)
        });
    }
    // Every Representation has video properties (checked above), and reps is non-empty.
    let top = reps
        .first()
        .and_then(|r| r.video.as_ref())
        .ok_or(DashError::Empty)?;
    let mut set = AdaptationSet {
        id: Some("0".into()),
        contentType: Some("video".into()),
        mimeType: Some("video/mp4".into()),
        segmentAlignment: Some(true),
        startWithSAP: Some(1),
        maxWidth: Some(max_width.into()),
        maxHeight: Some(max_height.into()),
        maxFrameRate: Some(frame_rate(max_rate)),
        par: Some(aspect_ratio(top.width, top.height)),
        representations,
        ..Default::default()
    };
    place_templates(&mut set, reps);
    Ok(set)
}

fn audio_adaptation(r: &DashRepresentation) -> Result<AdaptationSet, DashError> {
    check(r)?;
    let a = r
        .audio
        .as_ref()
        .ok_or_else(|| invalid(r, "no audio properties"))?;
    let mut set = AdaptationSet {
        id: Some("1".into()),
        contentType: Some("audio".into()),
        mimeType: Some("audio/mp4".into()),
        lang: Some("und".into()),
        segmentAlignment: Some(true),
        startWithSAP: Some(1),
        representations: vec![Representation {
            audioSamplingRate: Some(a.sample_rate.to_string()),
            AudioChannelConfiguration: vec![AudioChannelConfiguration {
                schemeIdUri: AUDIO_CHANNEL_SCHEME.into(),
                value: Some(a.channels.to_string()),
                ..Default::default()
            }],
            ..representation(r)
        }],
        ..Default::default()
    };
    place_templates(&mut set, std::slice::from_ref(r));
    Ok(set)
}

/// Attributes common to video and audio Representations.
fn representation(r: &DashRepresentation) -> Representation {
    Representation {
        id: Some(r.id.clone()),
        codecs: Some(r.codecs.clone()),
        bandwidth: Some(r.bandwidth),
        ..Default::default()
    }
}

/// Rejects what the template and timeline cannot express.
fn check(r: &DashRepresentation) -> Result<(), DashError> {
    // Representation@id is StringNoWhitespaceType and also a path component.
    if r.id.is_empty()
        || r.id
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '$')
    {
        return Err(invalid(
            r,
            "id must be non-empty without whitespace, '/' or '$'",
        ));
    }
    if r.timescale == 0 {
        return Err(invalid(r, "timescale is 0"));
    }
    if r.segments.is_empty() {
        return Err(invalid(r, "no segments"));
    }
    if r.segments.iter().any(|s| s.duration == 0) {
        return Err(invalid(r, "zero-length segment"));
    }
    Ok(())
}

fn invalid(r: &DashRepresentation, reason: &'static str) -> DashError {
    DashError::InvalidRepresentation {
        id: r.id.clone(),
        reason,
    }
}

/// Puts one SegmentTemplate on the AdaptationSet if all `reps` (which are `set.representations`
/// in order) share a timeline, else one on each Representation.
fn place_templates(set: &mut AdaptationSet, reps: &[DashRepresentation]) {
    let shared = reps.windows(2).all(|w| {
        w[0].timescale == w[1].timescale
            && w[0].presentation_time_offset == w[1].presentation_time_offset
            && w[0].segments.len() == w[1].segments.len()
            && w[0]
                .segments
                .iter()
                .zip(&w[1].segments)
                .all(|(a, b)| a.start == b.start && a.duration == b.duration)
    });
    match reps.first() {
        Some(first) if shared => set.SegmentTemplate = Some(segment_template(first)),
        _ => {
            for (rep, r) in set.representations.iter_mut().zip(reps) {
                rep.SegmentTemplate = Some(segment_template(r));
            }
        }
    }
}

fn segment_template(r: &DashRepresentation) -> SegmentTemplate {
    SegmentTemplate {
        timescale: Some(r.timescale.into()),
        initialization: Some(INIT_TEMPLATE.into()),
        media: Some(MEDIA_TEMPLATE.into()),
        startNumber: Some(1),
        presentationTimeOffset: (r.presentation_time_offset > 0)
            .then_some(r.presentation_time_offset),
        SegmentTimeline: Some(timeline(&r.segments)),
        ..Default::default()
    }
}

/// Run-length encodes segments as `S` elements: `@t` on the first and after any gap or overlap,
/// `@r` for runs of equal durations.
fn timeline(segments: &[Segment]) -> SegmentTimeline {
    let mut out: Vec<S> = Vec::new();
    let mut next_start = None;
    for seg in segments {
        let contiguous = next_start == Some(seg.start);
        next_start = Some(seg.start.saturating_add(seg.duration));
        if let Some(last) = out.last_mut().filter(|l| contiguous && l.d == seg.duration) {
            last.r = Some(last.r.unwrap_or(0) + 1);
            continue;
        }
        out.push(S {
            t: (!contiguous).then_some(seg.start),
            d: seg.duration,
            ..Default::default()
        });
    }
    SegmentTimeline { segments: out }
}

/// `frameRate` as `num/den` in lowest terms, or `num` for whole rates.
fn frame_rate(r: Ratio) -> String {
    let g = gcd(r.num, r.den).max(1);
    match (r.num / g, r.den / g) {
        (n, 1) => n.to_string(),
        (n, d) => format!("{n}/{d}"),
    }
}

/// `par` as `w:h` in lowest terms (1920×1080 → `16:9`).
fn aspect_ratio(width: u32, height: u32) -> String {
    let g = gcd(width, height).max(1);
    format!("{}:{}", width / g, height / g)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Seconds → `Duration`, rounded to the millisecond (keeps `xs:duration` values short).
fn secs_to_duration(field: &'static str, value: f64) -> Result<Duration, DashError> {
    let millis = (value * 1000.0).round();
    if !(0.0..=1e15).contains(&millis) {
        return Err(DashError::InvalidDuration { field, value });
    }
    Ok(Duration::from_millis(millis as u64))
}

/// `ticks / timescale` seconds, rounded up to the nanosecond; `timescale` must be non-zero.
fn ticks_to_duration_ceil(ticks: u64, timescale: u32) -> Duration {
    let nanos = (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(timescale.max(1)));
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{AudioInfo, VideoInfo};
    use std::path::Path;
    use std::process::Command;

    fn segments(durations: &[u64]) -> Vec<Segment> {
        let mut start = 0;
        durations
            .iter()
            .map(|&duration| {
                let s = Segment {
                    start,
                    duration,
                    bytes: 1000,
                };
                start += duration;
                s
            })
            .collect()
    }

    fn video(
        id: &str,
        width: u32,
        height: u32,
        bandwidth: u64,
        segs: Vec<Segment>,
    ) -> DashRepresentation {
        DashRepresentation {
            presentation_time_offset: 0,
            id: id.into(),
            codecs: "avc1.64001f".into(),
            timescale: 15_360,
            bandwidth,
            video: Some(VideoInfo {
                width,
                height,
                frame_rate: Ratio {
                    num: 60000,
                    den: 2002,
                },
            }),
            audio: None,
            segments: segs,
        }
    }

    fn package() -> PackageInfo {
        // 15360 Hz: 6 s, 6 s, 6 s, 4.5 s.
        let v = [92_160, 92_160, 92_160, 69_120];
        // 48 kHz AAC: 1024-sample frames, not a multiple of 6 s.
        let a = [288_768, 287_744, 288_768, 216_064];
        PackageInfo {
            duration_secs: 22.5,
            segment_duration_secs: 6.0,
            hls: vec![],
            dash_video: vec![
                video("1080p", 1920, 1080, 5_000_000, segments(&v)),
                video("720p", 1280, 720, 3_000_000, segments(&v)),
                video("360p", 640, 360, 800_000, segments(&v)),
            ],
            dash_audio: Some(DashRepresentation {
                presentation_time_offset: 0,
                id: "audio_128k".into(),
                codecs: "mp4a.40.2".into(),
                timescale: 48_000,
                bandwidth: 130_000,
                video: None,
                audio: Some(AudioInfo {
                    sample_rate: 48_000,
                    channels: 2,
                }),
                segments: segments(&a),
            }),
        }
    }

    /// Expands a timeline back into (start, duration) pairs.
    fn expand(tl: &SegmentTimeline) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut t = 0;
        for s in &tl.segments {
            t = s.t.unwrap_or(t);
            for _ in 0..=s.r.unwrap_or(0) {
                out.push((t, s.d));
                t += s.d;
            }
        }
        out
    }

    fn pairs(r: &DashRepresentation) -> Vec<(u64, u64)> {
        r.segments.iter().map(|s| (s.start, s.duration)).collect()
    }

    fn parse(xml: &str) -> MPD {
        match dash_mpd_core::parse(xml) {
            Ok(m) => m,
            Err(e) => panic!("unparsable MPD: {e}\n{xml}"),
        }
    }

    /// Validates against the DASH MPD schema in `tests/dash-schema` with xmllint (offline).
    fn assert_schema_valid(xml: &str) {
        let schema_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dash-schema");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("manifest.mpd");
        std::fs::write(&file, xml).unwrap();
        let out = Command::new("xmllint")
            .env("XML_CATALOG_FILES", schema_dir.join("catalog.xml"))
            .args(["--nonet", "--noout", "--schema"])
            .arg(schema_dir.join("DASH-MPD.xsd"))
            .arg(&file)
            .output()
            .expect("xmllint (libxml2-utils) must be installed");
        assert!(
            out.status.success(),
            "schema validation failed:\n{}\n{xml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn shared_video_timeline_round_trips_and_validates() {
        let p = package();
        let xml = mpd(&p).unwrap();
        assert_schema_valid(&xml);
        let m = parse(&xml);
        assert!(
            dash_mpd_core::check_conformity(&m).is_empty(),
            "{:?}",
            dash_mpd_core::check_conformity(&m)
        );
        assert_eq!(m.profiles.as_deref(), Some(PROFILE));
        assert_eq!(m.mpdtype.as_deref(), Some("static"));
        assert_eq!(
            m.mediaPresentationDuration,
            Some(Duration::from_millis(22_500))
        );
        assert_eq!(m.minBufferTime, Some(Duration::from_secs(12)));
        assert_eq!(m.periods.len(), 1);
        let period = &m.periods[0];
        assert_eq!(period.id.as_deref(), Some("0"));
        assert_eq!(period.start, Some(Duration::ZERO));
        assert_eq!(period.adaptations.len(), 2);

        let vset = &period.adaptations[0];
        assert_eq!(vset.contentType.as_deref(), Some("video"));
        assert_eq!(vset.mimeType.as_deref(), Some("video/mp4"));
        assert_eq!(vset.segmentAlignment, Some(true));
        assert_eq!(vset.startWithSAP, Some(1));
        assert_eq!((vset.maxWidth, vset.maxHeight), (Some(1920), Some(1080)));
        assert_eq!(vset.maxFrameRate.as_deref(), Some("30000/1001"));
        assert_eq!(vset.par.as_deref(), Some("16:9"));
        let st = vset.SegmentTemplate.as_ref().expect("shared template");
        assert_eq!(st.timescale, Some(15_360));
        assert_eq!(st.startNumber, Some(1));
        assert_eq!(st.initialization.as_deref(), Some(INIT_TEMPLATE));
        assert_eq!(st.media.as_deref(), Some(MEDIA_TEMPLATE));
        let tl = st.SegmentTimeline.as_ref().unwrap();
        assert_eq!(tl.segments.len(), 2); // r=2 run of 6 s, then the 4.5 s tail
        assert_eq!(tl.segments[0].t, Some(0));
        assert_eq!(tl.segments[0].r, Some(2));
        assert_eq!(expand(tl), pairs(&p.dash_video[0]));
        assert_eq!(vset.representations.len(), 3);
        for (rep, want) in vset.representations.iter().zip(&p.dash_video) {
            let v = want.video.as_ref().unwrap();
            assert_eq!(rep.id.as_deref(), Some(want.id.as_str()));
            assert_eq!(rep.codecs.as_deref(), Some("avc1.64001f"));
            assert_eq!(rep.bandwidth, Some(want.bandwidth));
            assert_eq!(
                (rep.width, rep.height),
                (Some(v.width.into()), Some(v.height.into()))
            );
            assert_eq!(rep.frameRate.as_deref(), Some("30000/1001"));
            assert_eq!(rep.sar.as_deref(), Some("1:1"));
            assert!(rep.SegmentTemplate.is_none());
        }

        let aset = &period.adaptations[1];
        assert_eq!(aset.contentType.as_deref(), Some("audio"));
        assert_eq!(aset.mimeType.as_deref(), Some("audio/mp4"));
        assert_eq!(aset.lang.as_deref(), Some("und"));
        assert_eq!(aset.startWithSAP, Some(1));
        assert_eq!(aset.representations.len(), 1);
        let rep = &aset.representations[0];
        let want = p.dash_audio.as_ref().unwrap();
        assert_eq!(rep.id.as_deref(), Some("audio_128k"));
        assert_eq!(rep.codecs.as_deref(), Some("mp4a.40.2"));
        assert_eq!(rep.bandwidth, Some(130_000));
        assert_eq!(rep.audioSamplingRate.as_deref(), Some("48000"));
        let acc = &rep.AudioChannelConfiguration;
        assert_eq!(acc.len(), 1);
        assert_eq!(acc[0].schemeIdUri, AUDIO_CHANNEL_SCHEME);
        assert_eq!(acc[0].value.as_deref(), Some("2"));
        let st = aset.SegmentTemplate.as_ref().unwrap();
        assert_eq!(st.timescale, Some(48_000));
        assert_eq!(expand(st.SegmentTimeline.as_ref().unwrap()), pairs(want));
    }

    #[test]
    fn diverging_video_timelines_get_per_representation_templates() {
        let mut p = package();
        p.dash_video[2].timescale = 90_000;
        p.dash_video[2].segments = segments(&[540_000, 540_000, 540_000, 405_000]);
        p.dash_video[2].video.as_mut().unwrap().frame_rate = Ratio { num: 25, den: 1 };
        // A gap in the middle one: the timeline must restate @t.
        p.dash_video[1].segments[2].start += 10;
        p.dash_video[1].segments[3].start += 10;
        p.dash_audio = None;
        let xml = mpd(&p).unwrap();
        assert_schema_valid(&xml);
        let m = parse(&xml);
        let vset = &m.periods[0].adaptations[0];
        assert_eq!(m.periods[0].adaptations.len(), 1);
        assert!(vset.SegmentTemplate.is_none());
        assert_eq!(vset.maxFrameRate.as_deref(), Some("30000/1001"));
        for (rep, want) in vset.representations.iter().zip(&p.dash_video) {
            let st = rep.SegmentTemplate.as_ref().expect("per-rep template");
            assert_eq!(st.timescale, Some(want.timescale.into()));
            assert_eq!(expand(st.SegmentTimeline.as_ref().unwrap()), pairs(want));
        }
        assert_eq!(vset.representations[2].frameRate.as_deref(), Some("25"));
        let gap = vset.representations[1].SegmentTemplate.as_ref().unwrap();
        let s = &gap.SegmentTimeline.as_ref().unwrap().segments;
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].t, Some(2 * 92_160 + 10));
    }

    #[test]
    fn audio_only_validates() {
        let mut p = package();
        p.dash_video.clear();
        let xml = mpd(&p).unwrap();
        assert_schema_valid(&xml);
        assert_eq!(parse(&xml).periods[0].adaptations.len(), 1);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let empty = PackageInfo {
            dash_video: vec![],
            dash_audio: None,
            ..package()
        };
        assert!(matches!(mpd(&empty), Err(DashError::Empty)));
        let mut p = package();
        p.duration_secs = f64::NAN;
        assert!(matches!(mpd(&p), Err(DashError::InvalidDuration { .. })));
        let mut p = package();
        p.segment_duration_secs = -1.0;
        assert!(matches!(mpd(&p), Err(DashError::InvalidDuration { .. })));
        for breakage in 0..6 {
            let mut p = package();
            let r = &mut p.dash_video[1];
            match breakage {
                0 => r.timescale = 0,
                1 => r.segments.clear(),
                2 => r.video = None,
                3 => r.id = "a b".into(),
                4 => r.video.as_mut().unwrap().frame_rate.den = 0,
                _ => r.segments[1].duration = 0,
            }
            let want = r.id.clone();
            assert!(
                matches!(mpd(&p), Err(DashError::InvalidRepresentation { ref id, .. }) if *id == want),
                "case {breakage}"
            );
        }
        let mut p = package();
        p.dash_audio.as_mut().unwrap().audio = None;
        assert!(matches!(
            mpd(&p),
            Err(DashError::InvalidRepresentation { .. })
        ));
    }

    #[test]
    fn helpers() {
        assert_eq!(frame_rate(Ratio { num: 60, den: 2 }), "30");
        assert_eq!(
            frame_rate(Ratio {
                num: 24000,
                den: 1001
            }),
            "24000/1001"
        );
        assert_eq!(aspect_ratio(1280, 720), "16:9");
        assert_eq!(aspect_ratio(0, 0), "0:0");
        assert_eq!(
            ticks_to_duration_ceil(1, 3),
            Duration::from_nanos(333_333_334)
        );
        let tl = timeline(&segments(&[5, 5, 5, 3, 5]));
        let d: Vec<_> = tl.segments.iter().map(|s| (s.t, s.d, s.r)).collect();
        assert_eq!(d, [(Some(0), 5, Some(2)), (None, 3, None), (None, 5, None)]);
    }
}
