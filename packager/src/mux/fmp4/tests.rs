//! Tests of the fMP4 writer: structural re-parsing with mp4-atom, and end-to-end decoding of
//! written segments with the ffmpeg/ffprobe CLIs.

use super::*;
use mp4_atom::{Any, Codec, Decode, DrefEntry, FourCC, StszSamples, Trex, TrunEntry};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// libx264 High profile 320x240 parameter sets.
const SPS: &str = "6764000dacd94141fb0110000003001000000303c0f1429960";
const PPS: &str = "68ebe3cb22c0";
/// AAC-LC, 48 kHz, stereo.
const ASC: [u8; 2] = [0x11, 0x90];

fn video_cfg() -> TrackConfig {
    TrackConfig {
        track_id: 1,
        timescale: 90_000,
        kind: TrackKind::Video {
            width: 320,
            height: 240,
            sps: hex(SPS),
            pps: hex(PPS),
        },
        language: "und".into(),
    }
}

fn audio_cfg() -> TrackConfig {
    TrackConfig {
        track_id: 2,
        timescale: 48_000,
        kind: TrackKind::Audio {
            sample_rate: 48_000,
            channels: 2,
            asc: ASC.to_vec(),
        },
        language: "eng".into(),
    }
}

/// Collects warning and error events: mp4-atom (without its `strict` feature, which we do not
/// enable) only logs unknown child boxes, unknown descriptors and trailing bytes.
struct WarningLog(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for WarningLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        self.0.lock().unwrap().push(format!("{event:?}"));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Decodes every top-level box; fails on decode errors, unknown boxes (at any depth, via
/// mp4-atom's warnings), leftover bytes inside boxes (mp4-atom's under-decode check).
fn try_parse_strict(mut bytes: &[u8]) -> Result<Vec<Any>, String> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut boxes = Vec::new();
    tracing::subscriber::with_default(WarningLog(log.clone()), || {
        while !bytes.is_empty() {
            let atom = Any::decode(&mut bytes).map_err(|e| format!("decode: {e}"))?;
            if let Any::Unknown(kind, _) = atom {
                return Err(format!("unknown top-level box {kind}"));
            }
            boxes.push(atom);
        }
        Ok(())
    })?;
    let log = log.lock().unwrap();
    if !log.is_empty() {
        return Err(format!("mp4-atom warnings: {log:?}"));
    }
    Ok(boxes)
}

fn parse_strict(bytes: &[u8]) -> Vec<Any> {
    try_parse_strict(bytes).unwrap_or_else(|e| panic!("{e}"))
}

/// (type, size) of each top-level box, read from the raw headers.
fn top_level(mut bytes: &[u8]) -> Vec<([u8; 4], usize)> {
    let mut out = Vec::new();
    while bytes.len() >= 8 {
        let size = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        out.push((bytes[4..8].try_into().unwrap(), size));
        bytes = &bytes[size..];
    }
    assert!(bytes.is_empty(), "trailing bytes");
    out
}

/// The version byte of the first box of type `kind` anywhere in `bytes`.
fn version_of(bytes: &[u8], kind: &[u8; 4]) -> u8 {
    let at = bytes
        .windows(4)
        .position(|w| w == kind)
        .unwrap_or_else(|| panic!("no {kind:?}"));
    bytes[at + 4]
}

#[test]
fn strict_parse_rejects_unknown_children() {
    // Guards the checker itself: an unknown box inside moov must be reported, not skipped.
    let mut init = init_segment(&video_cfg());
    let moov_at = init.windows(4).position(|w| w == b"moov").unwrap() - 4;
    let moov_size = u32::from_be_bytes(init[moov_at..moov_at + 4].try_into().unwrap());
    init[moov_at..moov_at + 4].copy_from_slice(&(moov_size + 8).to_be_bytes());
    init.extend_from_slice(&[0, 0, 0, 8, b'z', b'z', b'z', b'z']);
    let err = try_parse_strict(&init).unwrap_err();
    // Without mp4-atom's `strict` feature the unknown box is a logged warning we turn into an
    // error; with it (the workspace's end-to-end tests enable it) mp4-atom refuses it itself.
    assert!(
        err.contains("warnings") || err.contains("unexpected box"),
        "{err}"
    );
    assert!(try_parse_strict(&[0, 0, 0, 8, b'z', b'z', b'z', b'z']).is_err());
}

#[test]
fn video_init_segment_parses() {
    let init = init_segment(&video_cfg());
    let boxes = parse_strict(&init);
    let [Any::Ftyp(ftyp), Any::Moov(moov)] = &boxes[..] else {
        panic!("{boxes:?}")
    };
    assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
    assert_eq!(
        ftyp.compatible_brands,
        [b"iso6", b"iso5", b"cmfc", b"dash"].map(FourCC::new)
    );

    assert_eq!(moov.mvhd.timescale, 90_000);
    assert_eq!(moov.mvhd.duration, 0);
    assert_eq!(moov.mvhd.next_track_id, 2);
    let [trak] = &moov.trak[..] else {
        panic!("one trak")
    };
    assert_eq!(trak.tkhd.track_id, 1);
    assert!(trak.tkhd.enabled && trak.tkhd.in_movie);
    assert_eq!(
        (trak.tkhd.width.integer(), trak.tkhd.height.integer()),
        (320, 240)
    );
    assert_eq!(trak.tkhd.duration, 0);
    assert!(trak.edts.is_none());
    let mdia = &trak.mdia;
    assert_eq!(
        (
            mdia.mdhd.timescale,
            mdia.mdhd.duration,
            mdia.mdhd.language.as_str()
        ),
        (90_000, 0, "und")
    );
    assert_eq!(mdia.hdlr.handler, FourCC::new(b"vide"));
    assert!(mdia.minf.vmhd.is_some() && mdia.minf.smhd.is_none());
    assert!(
        matches!(&mdia.minf.dinf.dref.entries[..], [DrefEntry::Url(u)] if u.location.is_empty())
    );
    let stbl = &mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty() && stbl.stsc.entries.is_empty());
    let stsz_count = match &stbl.stsz.samples {
        StszSamples::Identical { count, .. } => *count as usize,
        StszSamples::Different { sizes } => sizes.len(),
    };
    assert_eq!(stsz_count, 0);
    assert!(stbl.stco.as_ref().is_some_and(|s| s.entries.is_empty()));
    let [Codec::Avc1(avc1)] = &stbl.stsd.codecs[..] else {
        panic!("{:?}", stbl.stsd)
    };
    assert_eq!(
        (
            avc1.visual.width,
            avc1.visual.height,
            avc1.visual.data_reference_index
        ),
        (320, 240, 1)
    );
    let avcc = &avc1.avcc;
    assert_eq!(
        (
            avcc.avc_profile_indication,
            avcc.profile_compatibility,
            avcc.avc_level_indication
        ),
        (100, 0, 13)
    );
    assert_eq!(avcc.length_size, 4);
    assert_eq!(avcc.sequence_parameter_sets, [hex(SPS)]);
    assert_eq!(avcc.picture_parameter_sets, [hex(PPS)]);
    let ext = avcc.ext.as_ref().expect("High profile avcC extension");
    assert_eq!(
        (ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma),
        (1, 8, 8)
    );
    assert_eq!(
        avc1.pasp.as_ref().map(|p| (p.h_spacing, p.v_spacing)),
        Some((1, 1))
    );

    let mvex = moov.mvex.as_ref().expect("mvex");
    assert_eq!(
        mvex.trex,
        [Trex {
            track_id: 1,
            default_sample_description_index: 1,
            ..Default::default()
        }]
    );
}

#[test]
fn audio_init_segment_parses() {
    let init = init_segment(&audio_cfg());
    let boxes = parse_strict(&init);
    let [Any::Ftyp(_), Any::Moov(moov)] = &boxes[..] else {
        panic!("{boxes:?}")
    };
    assert_eq!(moov.mvhd.next_track_id, 3);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, 2);
    assert_eq!(trak.tkhd.volume.integer(), 1);
    assert_eq!(
        (trak.tkhd.width.integer(), trak.tkhd.height.integer()),
        (0, 0)
    );
    assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    assert_eq!(trak.mdia.mdhd.language, "eng");
    assert_eq!(trak.mdia.hdlr.handler, FourCC::new(b"soun"));
    assert!(trak.mdia.minf.smhd.is_some() && trak.mdia.minf.vmhd.is_none());
    let [Codec::Mp4a(mp4a)] = &trak.mdia.minf.stbl.stsd.codecs[..] else {
        panic!("mp4a")
    };
    assert_eq!((mp4a.audio.channel_count, mp4a.audio.sample_size), (2, 16));
    assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
    let dc = &mp4a.esds.es_desc.dec_config;
    assert_eq!((dc.object_type_indication, dc.stream_type), (0x40, 5));
    assert_eq!(dc.dec_specific.as_ref().map(|d| &d.raw[..]), Some(&ASC[..]));
    assert_eq!(moov.mvex.as_ref().unwrap().trex[0].track_id, 2);

    // Descriptor sizes are the minimal one-byte form here: ES 3 + 2 + DC (2 + 13 + DSI 4) + SL 3.
    let esds = init.windows(4).position(|w| w == b"esds").unwrap() + 8;
    assert_eq!(init[esds..esds + 2], [0x03, 25]);
}

/// A GOP in decode order with B-frames: I P B B P B B, one frame = 3000 ticks, dts starting 0.
fn video_samples(first_frame: i64) -> Vec<Sample> {
    let pts_frames = [0, 3, 1, 2, 6, 4, 5];
    pts_frames
        .iter()
        .enumerate()
        .map(|(i, &p)| Sample {
            data: [0, 0, 0, 2, 0x65 + i as u8, 0x88].repeat(i + 1),
            pts: (first_frame + p) * 3000,
            dts: (first_frame + i as i64) * 3000,
            duration: 3000,
            keyframe: i == 0,
        })
        .collect()
}

#[test]
fn video_media_segment_parses() {
    let samples = video_samples(30);
    let seg = media_segment(&video_cfg(), 7, &samples).unwrap();
    let sizes = top_level(&seg);
    let kinds: Vec<&[u8; 4]> = sizes.iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, [b"styp", b"sidx", b"moof", b"mdat"]);
    let (moof_size, mdat_size) = (sizes[2].1, sizes[3].1);
    let payload: Vec<u8> = samples.iter().flat_map(|s| s.data.clone()).collect();
    assert_eq!(mdat_size, payload.len() + 8);
    assert_eq!(
        (
            version_of(&seg, b"sidx"),
            version_of(&seg, b"tfdt"),
            version_of(&seg, b"trun")
        ),
        (1, 1, 1)
    );

    let boxes = parse_strict(&seg);
    let [Any::Styp(styp), Any::Sidx(sidx), Any::Moof(moof), Any::Mdat(mdat)] = &boxes[..] else {
        panic!("{boxes:?}")
    };
    assert_eq!(styp.major_brand, FourCC::new(b"msdh"));
    assert_eq!(styp.compatible_brands, [b"msdh", b"msix"].map(FourCC::new));

    assert_eq!(
        (sidx.reference_id, sidx.timescale, sidx.first_offset),
        (1, 90_000, 0)
    );
    assert_eq!(sidx.earliest_presentation_time, 30 * 3000);
    let [r] = &sidx.references[..] else {
        panic!("one reference")
    };
    assert!(!r.reference_type);
    assert_eq!(r.referenced_size as usize, moof_size + mdat_size);
    assert_eq!(r.subsegment_duration, 7 * 3000);
    assert!(r.starts_with_sap);
    assert_eq!((r.sap_type, r.sap_delta_time), (1, 0));

    assert_eq!(moof.mfhd.sequence_number, 7);
    let [traf] = &moof.traf[..] else {
        panic!("one traf")
    };
    assert_eq!(traf.tfhd.track_id, 1);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.tfhd.base_data_offset, None);
    assert_eq!(
        traf.tfdt.as_ref().map(|t| t.base_media_decode_time),
        Some(30 * 3000)
    );
    let [trun] = &traf.trun[..] else {
        panic!("one trun")
    };
    assert_eq!(trun.data_offset, Some(moof_size as i32 + 8));
    assert_eq!(trun.samples.len(), samples.len());
    let entries: Vec<TrunEntry> = trun.samples.iter().collect();
    let want: Vec<TrunEntry> = samples
        .iter()
        .map(|s| TrunEntry {
            duration: Some(3000),
            size: Some(s.data.len() as u32),
            flags: Some(if s.keyframe { 0x0200_0000 } else { 0x0101_0000 }),
            cts: Some(s.pts - s.dts),
        })
        .collect();
    assert_eq!(entries, want);
    // Signed offsets: the B-frames of this pattern present before their decode time.
    assert!(entries.iter().any(|e| e.cts.unwrap() < 0));
    assert_eq!(mdat.data, payload);
    // The data offset points at the first sample's bytes.
    let data_start = sizes[0].1 + sizes[1].1 + moof_size + 8;
    assert_eq!(
        seg[data_start..data_start + samples[0].data.len()],
        samples[0].data[..]
    );
}

#[test]
fn audio_media_segment_omits_zero_composition_offsets() {
    let samples: Vec<Sample> = (0..5)
        .map(|i| Sample {
            data: vec![i as u8; 10 + i],
            pts: 1024 * (10 + i as i64),
            dts: 1024 * (10 + i as i64),
            duration: 1024,
            keyframe: true,
        })
        .collect();
    let seg = media_segment(&audio_cfg(), 1, &samples).unwrap();
    let boxes = parse_strict(&seg);
    let [_, Any::Sidx(sidx), Any::Moof(moof), Any::Mdat(mdat)] = &boxes[..] else {
        panic!("{boxes:?}")
    };
    assert_eq!(
        (sidx.reference_id, sidx.earliest_presentation_time),
        (2, 10_240)
    );
    assert_eq!(sidx.references[0].subsegment_duration, 5 * 1024);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 10_240);
    let entries: Vec<TrunEntry> = traf.trun[0].samples.iter().collect();
    assert_eq!(entries.len(), 5);
    assert!(entries
        .iter()
        .all(|e| e.cts.is_none() && e.flags == Some(0x0200_0000) && e.duration == Some(1024)));
    assert_eq!(
        entries.iter().map(|e| e.size.unwrap()).collect::<Vec<_>>(),
        [10, 11, 12, 13, 14]
    );
    assert_eq!(mdat.data.len(), 60);
}

#[test]
fn segment_starting_without_sync_sample_has_no_sap() {
    let mut samples = video_samples(0);
    samples[0].keyframe = false;
    let boxes = parse_strict(&media_segment(&video_cfg(), 1, &samples).unwrap());
    let Any::Sidx(sidx) = &boxes[1] else { panic!() };
    assert!(!sidx.references[0].starts_with_sap);
    assert_eq!(sidx.references[0].sap_type, 0);
}

#[test]
fn composition_offsets_follow_sample_durations() {
    // dts values that disagree with durations: offsets are taken against the implied decode
    // times so presentation times survive.
    let mut samples = video_samples(0);
    samples[3].dts += 1000;
    let boxes = parse_strict(&media_segment(&video_cfg(), 1, &samples).unwrap());
    let Any::Moof(moof) = &boxes[2] else { panic!() };
    let cts: Vec<i64> = moof.traf[0].trun[0]
        .samples
        .iter()
        .map(|e| e.cts.unwrap())
        .collect();
    let implied: Vec<i64> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| s.pts - i as i64 * 3000)
        .collect();
    assert_eq!(cts, implied);
    assert_ne!(cts[3], samples[3].pts - samples[3].dts);
}

#[test]
fn invalid_segments_are_errors() {
    let cfg = video_cfg();
    assert_eq!(media_segment(&cfg, 1, &[]), Err(Fmp4Error::NoSamples));

    let mut s = video_samples(0);
    s[2].dts = -1;
    assert_eq!(
        media_segment(&cfg, 1, &s),
        Err(Fmp4Error::NegativeTime {
            index: 2,
            pts: s[2].pts,
            dts: -1
        })
    );

    let mut s = video_samples(0);
    s[0].pts = -3000;
    assert!(matches!(
        media_segment(&cfg, 1, &s),
        Err(Fmp4Error::NegativeTime { index: 0, .. })
    ));

    let mut s = video_samples(0);
    s[1].pts = i64::from(i32::MAX) + 3001;
    assert_eq!(
        media_segment(&cfg, 1, &s),
        Err(Fmp4Error::CompositionOffset {
            index: 1,
            offset: i64::from(i32::MAX) + 1
        })
    );

    let long = Sample {
        data: vec![1],
        pts: 0,
        dts: 0,
        duration: u32::MAX,
        keyframe: true,
    };
    let s = [
        long.clone(),
        Sample {
            pts: i64::from(u32::MAX),
            dts: i64::from(u32::MAX),
            ..long
        },
    ];
    assert_eq!(
        media_segment(&cfg, 1, &s),
        Err(Fmp4Error::TooLarge("duration"))
    );

    let mut s = video_samples(0);
    s[0].dts = i64::MAX - 10;
    s[0].pts = i64::MAX - 10;
    assert!(media_segment(&cfg, 1, &s).is_err());
}

// ---- End-to-end: segments written from real encoder output must decode with ffmpeg. ----

/// Runs `cmd` with whitespace-separated `args` (paths must not contain spaces); fails the test
/// if it fails.
fn run(cmd: &str, args: &str) -> std::process::Output {
    let out = Command::new(cmd)
        .args(args.split_whitespace())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ffprobe_json(entries: &str, file: &Path) -> serde_json::Value {
    let out = run(
        "ffprobe",
        &format!("-v error -of json {entries} {}", file.display()),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Writes init + one media segment per group of samples to `dir/out.mp4`.
fn write_track(dir: &Path, cfg: &TrackConfig, segments: &[&[Sample]]) -> PathBuf {
    let mut file = init_segment(cfg);
    for (i, samples) in segments.iter().enumerate() {
        file.extend(media_segment(cfg, i as u32 + 1, samples).unwrap());
    }
    let path = dir.join("out.mp4");
    std::fs::write(&path, file).unwrap();
    path
}

/// Decodes `file` fully with ffmpeg; any error output fails the test.
fn assert_decodes_cleanly(file: &Path) {
    let out = run(
        "ffmpeg",
        &format!("-v error -i {} -f null -", file.display()),
    );
    assert!(
        out.stderr.is_empty(),
        "ffmpeg decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (pts_time, key_frame) of every decoded frame.
fn decoded_frames(file: &Path) -> Vec<(f64, bool)> {
    let v = ffprobe_json("-show_entries frame=pts_time,key_frame", file);
    let frames = v["frames"].as_array().unwrap();
    frames
        .iter()
        .map(|f| {
            let t = f["pts_time"].as_str().unwrap().parse().unwrap();
            (t, f["key_frame"].as_i64() == Some(1))
        })
        .collect()
}

/// x264 output (60 frames at 30 fps, IDR every 30, two B-frames) in two segments.
#[test]
fn h264_segments_decode_with_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let (mp4, h264) = (dir.path().join("src.mp4"), dir.path().join("src.h264"));
    // The MP4 gives packet timestamps (in frames); its Annex B copy the bitstream, where AUDs
    // delimit access units.
    run(
        "ffmpeg",
        &format!(
            "-v error -f lavfi -i testsrc2=size=320x240:rate=30 -frames:v 60 -c:v libx264 -g 30 \
             -bf 2 -x264-params aud=1:scenecut=0 -video_track_timescale 30 {}",
            mp4.display()
        ),
    );
    let bsf = "-c copy -bsf:v h264_mp4toannexb -f h264";
    run(
        "ffmpeg",
        &format!("-v error -i {} {bsf} {}", mp4.display(), h264.display()),
    );

    let packets = ffprobe_json("-select_streams v -show_entries packet=pts,dts,flags", &mp4);
    let times: Vec<(i64, i64, bool)> = packets["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let key = p["flags"].as_str().unwrap().starts_with('K');
            (p["pts"].as_i64().unwrap(), p["dts"].as_i64().unwrap(), key)
        })
        .collect();
    assert_eq!(times.len(), 60);

    // Split at AUDs; x264 puts its SEI before the first AUD, so an AUD only starts a new access
    // unit once the current one has a slice.
    let annexb = std::fs::read(&h264).unwrap();
    let mut aus: Vec<Vec<u8>> = vec![Vec::new()];
    let mut has_slice = false;
    for nal in codec::nal_units(&annexb) {
        let ty = codec::nal_type(nal).unwrap();
        if ty == codec::NAL_AUD && has_slice {
            aus.push(Vec::new());
            has_slice = false;
        }
        has_slice |= (1..=5).contains(&ty);
        let au = aus.last_mut().unwrap();
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(nal);
    }
    assert_eq!(aus.len(), 60);

    // As the rendition worker does: shift decode times to start at 0, 90 kHz timescale.
    let tick = 3000;
    let shift = -times.iter().map(|t| t.1).min().unwrap().min(0);
    let (mut sps, mut pps) = (None, None);
    let mut samples = Vec::new();
    for (i, (au, &(pts, dts, key))) in aus.iter().zip(&times).enumerate() {
        let avcc = codec::annexb_to_avcc(au);
        assert_eq!(avcc.sps.is_some(), key, "x264 repeats SPS/PPS on keyframes");
        sps = sps.or(avcc.sps);
        pps = pps.or(avcc.pps);
        let next_dts = times.get(i + 1).map_or(dts + 1, |t| t.1);
        let duration = ((next_dts - dts) * tick) as u32;
        let dts = (dts + shift) * tick;
        samples.push(Sample {
            data: avcc.data,
            pts: pts * tick,
            dts,
            duration,
            keyframe: key,
        });
    }
    let max_negative_offset = samples.iter().map(|s| s.dts - s.pts).max().unwrap();
    assert!(
        max_negative_offset > 0,
        "B-frames need negative composition offsets"
    );
    let sps = sps.unwrap();
    assert_eq!(codec::avc_codec_string(&sps).unwrap(), "avc1.64000d");
    let kind = TrackKind::Video {
        width: 320,
        height: 240,
        sps,
        pps: pps.unwrap(),
    };
    let cfg = TrackConfig {
        track_id: 1,
        timescale: 90_000,
        kind,
        language: "und".into(),
    };
    assert!(samples[0].keyframe && samples[30].keyframe);
    let file = write_track(dir.path(), &cfg, &[&samples[..30], &samples[30..]]);

    let streams = ffprobe_json("-show_entries stream=codec_name,width,height", &file);
    let s = &streams["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(
        (s["width"].as_i64(), s["height"].as_i64()),
        (Some(320), Some(240))
    );
    let frames = decoded_frames(&file);
    assert_eq!(frames.len(), 60);
    // ffmpeg's mov demuxer delays presentation by the largest negative composition offset it
    // has seen ("dts_shift"), where MSE players use pts = dts + offset exactly; accept either,
    // but the offset must be constant and frames must be 1/30 s apart in order.
    let offset = frames[0].0;
    let ffmpeg_shift = max_negative_offset as f64 / 90_000.0;
    assert!(
        offset.abs() < 1e-6 || (offset - ffmpeg_shift).abs() < 1e-6,
        "first frame at {offset}"
    );
    for (i, &(t, key)) in frames.iter().enumerate() {
        assert!(
            (t - offset - i as f64 / 30.0).abs() < 1e-6,
            "frame {i} at {t}"
        );
        assert_eq!(key, i % 30 == 0, "frame {i} key flag");
    }
    assert_decodes_cleanly(&file);
}

/// ffmpeg's AAC encoder output (2 s of stereo sine, ADTS stripped) in two segments.
#[test]
fn aac_segments_decode_with_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let adts = dir.path().join("src.aac");
    run(
        "ffmpeg",
        &format!(
            "-v error -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -ac 2 -c:a aac -f adts {}",
            adts.display()
        ),
    );
    let data = std::fs::read(&adts).unwrap();

    // Strip ADTS headers (ISO/IEC 14496-3 §1.A.2); build the AudioSpecificConfig from the first.
    let mut frames: Vec<&[u8]> = Vec::new();
    let mut asc = None;
    let mut rest = &data[..];
    while !rest.is_empty() {
        assert!(
            rest.len() >= 7 && rest[0] == 0xff && rest[1] & 0xf0 == 0xf0,
            "ADTS sync"
        );
        let header_len = if rest[1] & 1 == 1 { 7 } else { 9 };
        let frame_len = (usize::from(rest[3] & 3) << 11)
            | (usize::from(rest[4]) << 3)
            | usize::from(rest[5] >> 5);
        let aot = (rest[2] >> 6) + 1;
        let freq = (rest[2] >> 2) & 0xf;
        let chans = ((rest[2] & 1) << 2) | (rest[3] >> 6);
        asc.get_or_insert([(aot << 3) | (freq >> 1), ((freq & 1) << 7) | (chans << 3)]);
        frames.push(&rest[header_len..frame_len]);
        rest = &rest[frame_len..];
    }
    let asc = asc.unwrap();
    assert_eq!(asc, ASC, "AAC-LC 48 kHz stereo");
    assert_eq!(codec::aac_codec_string(&asc).unwrap(), "mp4a.40.2");
    assert!(frames.len() > 90);

    let samples: Vec<Sample> = (0..)
        .zip(&frames)
        .map(|(i, f)| {
            let t = i * 1024;
            Sample {
                data: f.to_vec(),
                pts: t,
                dts: t,
                duration: 1024,
                keyframe: true,
            }
        })
        .collect();
    let kind = TrackKind::Audio {
        sample_rate: 48_000,
        channels: 2,
        asc: asc.to_vec(),
    };
    let cfg = TrackConfig {
        track_id: 1,
        timescale: 48_000,
        kind,
        language: "und".into(),
    };
    let half = samples.len() / 2;
    let file = write_track(dir.path(), &cfg, &[&samples[..half], &samples[half..]]);

    let streams = ffprobe_json(
        "-show_entries stream=codec_name,sample_rate,channels",
        &file,
    );
    let s = &streams["streams"][0];
    assert_eq!(
        (&s["codec_name"], &s["sample_rate"]),
        (&"aac".into(), &"48000".into())
    );
    assert_eq!(s["channels"], 2);
    let decoded = decoded_frames(&file);
    assert_eq!(decoded.len(), samples.len());
    for (i, &(t, _)) in decoded.iter().enumerate() {
        assert!(
            (t - i as f64 * 1024.0 / 48_000.0).abs() < 1e-6,
            "frame {i} at {t}"
        );
    }
    assert_decodes_cleanly(&file);
}
