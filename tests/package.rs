//! End-to-end packaging tests: every fixture shape is packaged by the real binary and the output is
//! checked with independent tools — ffprobe/ffmpeg decode every segment, m3u8-rs and dash-mpd-core
//! parse the manifests back, mp4-atom parses every fMP4 box, xmllint validates the MPD against the
//! MPEG-DASH schema.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use m3u8_rs::Playlist;

/// What the checks found, for shape-specific assertions.
#[derive(Debug)]
struct Report {
    /// rung name → (width, height)
    sizes: BTreeMap<String, (u64, u64)>,
    /// rung name → CODECS of the HLS variant
    codecs: BTreeMap<String, String>,
    has_audio: bool,
    segments: usize,
    duration: f64,
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Duration and first video packet (pts, keyframe) of a TS segment.
fn first_video_packet(ts: &Path) -> (f64, bool) {
    let j = ffprobe_json(
        ts,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time,flags",
            "-read_intervals",
            "%+#1",
        ],
    );
    let p = &j["packets"][0];
    let pts: f64 = p["pts_time"].as_str().unwrap().parse().unwrap();
    (pts, p["flags"].as_str().unwrap().starts_with('K'))
}

fn expand_timeline(st: &dash_mpd_core::SegmentTimeline) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut t = 0u64;
    for s in &st.segments {
        if let Some(st) = s.t {
            t = st;
        }
        let reps = s.r.unwrap_or(0).max(0) as u64 + 1;
        for _ in 0..reps {
            out.push((t, s.d));
            t += s.d;
        }
    }
    out
}

fn decode_atoms(bytes: &[u8], what: &str) -> Vec<mp4_atom::Any> {
    use mp4_atom::Decode;
    let mut b: &[u8] = bytes;
    let mut atoms = Vec::new();
    while !b.is_empty() {
        let a = mp4_atom::Any::decode(&mut b).unwrap_or_else(|e| panic!("{what}: mp4-atom: {e}"));
        if let mp4_atom::Any::Unknown(k, _) = &a {
            panic!("{what}: unknown top-level box {k:?}");
        }
        atoms.push(a);
    }
    atoms
}

fn verify(pkg: &Path, source: &Path) -> Report {
    let (src_dur, _) = source_video(source);
    // ---- HLS ----
    let master = match m3u8_rs::parse_playlist_res(&read(&pkg.join("hls/master.m3u8"))) {
        Ok(Playlist::MasterPlaylist(m)) => m,
        other => panic!("master.m3u8 is not a master playlist: {other:?}"),
    };
    assert!(!master.variants.is_empty());
    assert!(
        master.independent_segments,
        "EXT-X-INDEPENDENT-SEGMENTS missing"
    );
    let mut hls_starts: Vec<Vec<f64>> = Vec::new();
    let mut hls_durs: Vec<Vec<f64>> = Vec::new();
    let mut first_pts: Vec<Vec<f64>> = Vec::new();
    let mut sizes = BTreeMap::new();
    let mut codecs = BTreeMap::new();
    let mut has_audio = false;
    let mut fps = 0.0;
    for v in &master.variants {
        let name = v
            .uri
            .strip_suffix("/index.m3u8")
            .expect("variant uri <rung>/index.m3u8")
            .to_string();
        let res = v.resolution.expect("RESOLUTION");
        sizes.insert(name.clone(), (res.width, res.height));
        let c = v.codecs.clone().expect("CODECS");
        codecs.insert(name.clone(), c.clone());
        fps = v.frame_rate.expect("FRAME-RATE");
        let avg = v.average_bandwidth.expect("AVERAGE-BANDWIDTH");
        assert!(
            v.bandwidth >= avg && avg > 0,
            "{name}: BANDWIDTH {} < AVERAGE {avg}",
            v.bandwidth
        );
        let media = match m3u8_rs::parse_playlist_res(&read(&pkg.join("hls").join(&v.uri))) {
            Ok(Playlist::MediaPlaylist(m)) => m,
            other => panic!("{}: not a media playlist: {other:?}", v.uri),
        };
        assert!(media.end_list, "{name}: no ENDLIST");
        assert_eq!(media.playlist_type, Some(m3u8_rs::MediaPlaylistType::Vod));
        let mut t = 0.0;
        let (mut starts, mut durs, mut pts) = (Vec::new(), Vec::new(), Vec::new());
        for (k, s) in media.segments.iter().enumerate() {
            let d = f64::from(s.duration);
            assert!(
                (d.round() as u64) <= media.target_duration,
                "{name}: EXTINF {d} > TARGETDURATION"
            );
            let file = pkg.join("hls").join(&name).join(&s.uri);
            assert!(file.is_file(), "{} missing", file.display());
            let (p, key) = first_video_packet(&file);
            assert!(key, "{name} segment {k} does not start with a keyframe");
            assert_decodes(&file);
            // Measured bitrate of this segment never exceeds BANDWIDTH (except a short tail).
            let bits = std::fs::metadata(&file).unwrap().len() as f64 * 8.0;
            if k + 1 < media.segments.len() {
                assert!(
                    bits / d <= v.bandwidth as f64 * 1.001,
                    "{name} seg {k}: {} b/s > BANDWIDTH",
                    bits / d
                );
            }
            starts.push(t);
            durs.push(d);
            pts.push(p);
            t += d;
        }
        // Segment start times inside the TS agree with the playlist.
        for k in 0..pts.len() {
            assert!(
                ((pts[k] - pts[0]) - starts[k]).abs() < 0.002,
                "{name} seg {k}: pts {} vs EXTINF sum {}",
                pts[k] - pts[0],
                starts[k]
            );
        }
        // CODECS match the streams as ffprobe reads them.
        let first = pkg.join("hls").join(&name).join(&media.segments[0].uri);
        let j = ffprobe_json(
            &first,
            &[
                "-show_entries",
                "stream=codec_name,codec_type,profile,level,width,height,pix_fmt",
            ],
        );
        for s in j["streams"].as_array().unwrap() {
            match s["codec_type"].as_str() {
                Some("video") => {
                    assert_eq!(s["codec_name"], "h264");
                    assert_eq!(s["pix_fmt"], "yuv420p", "{name}: 8-bit 4:2:0 output");
                    assert_eq!(
                        (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap()),
                        (res.width, res.height)
                    );
                    let profile = match s["profile"].as_str().unwrap() {
                        "High" => "64",
                        "Main" => "4d",
                        "Baseline" | "Constrained Baseline" => "42",
                        p => panic!("unexpected profile {p}"),
                    };
                    let level = s["level"].as_i64().unwrap();
                    let vc = c.split(',').next().unwrap();
                    assert!(
                        vc.starts_with(&format!("avc1.{profile}"))
                            && vc.ends_with(&format!("{level:02x}")),
                        "{name}: CODECS {vc} vs profile {profile} level {level}"
                    );
                }
                Some("audio") => {
                    has_audio = true;
                    assert_eq!(s["codec_name"], "aac");
                    assert_eq!(s["profile"], "LC");
                    assert!(
                        c.contains("mp4a.40.2"),
                        "{name}: CODECS {c} lacks mp4a.40.2"
                    );
                }
                _ => {}
            }
        }
        assert_eq!(
            c.contains("mp4a"),
            has_audio,
            "{name}: CODECS {c} vs audio presence"
        );
        hls_starts.push(starts);
        hls_durs.push(durs);
        first_pts.push(pts);
    }
    // Every rung cuts at the same presentation times.
    for (i, p) in first_pts.iter().enumerate() {
        assert_eq!(
            p.len(),
            first_pts[0].len(),
            "segment counts differ across rungs"
        );
        for k in 0..p.len() {
            assert!(
                (p[k] - first_pts[0][k]).abs() < 1e-6,
                "rung {i} segment {k} starts at {} not {}",
                p[k],
                first_pts[0][k]
            );
        }
    }
    let total: f64 = hls_durs[0].iter().sum();
    assert!(
        (total - src_dur).abs() <= 1.0 / fps + 1e-3,
        "HLS total {total} vs source {src_dur} (±1 frame at {fps})"
    );

    // ---- DASH ----
    let mpd_path = pkg.join("dash/manifest.mpd");
    let xsd = root().join("tests/dash-schema");
    let o = Command::new("xmllint")
        .env("XML_CATALOG_FILES", xsd.join("catalog.xml"))
        .args(["--nonet", "--noout", "--schema"])
        .arg(xsd.join("DASH-MPD.xsd"))
        .arg(&mpd_path)
        .output()
        .expect("xmllint");
    assert!(
        o.status.success(),
        "MPD fails schema validation: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mpd =
        dash_mpd_core::parse(&String::from_utf8(read(&mpd_path)).unwrap()).expect("MPD parses");
    assert_eq!(mpd.mpdtype.as_deref(), Some("static"));
    let period = &mpd.periods[0];
    let mut dash_video_segments = None;
    let mut dash_audio = false;
    for aset in &period.adaptations {
        let is_video = aset.contentType.as_deref() == Some("video")
            || aset.mimeType.as_deref() == Some("video/mp4");
        dash_audio |= !is_video;
        for rep in &aset.representations {
            let id = rep.id.clone().expect("Representation@id");
            let tmpl = rep
                .SegmentTemplate
                .as_ref()
                .or(aset.SegmentTemplate.as_ref())
                .expect("SegmentTemplate");
            let timescale = tmpl.timescale.unwrap_or(1) as f64;
            let pto = tmpl.presentationTimeOffset.unwrap_or(0) as f64 / timescale;
            let tl = expand_timeline(tmpl.SegmentTimeline.as_ref().expect("SegmentTimeline"));
            let init_name = tmpl
                .initialization
                .as_ref()
                .unwrap()
                .replace("$RepresentationID$", &id);
            let init = read(&pkg.join("dash").join(&init_name));
            let atoms = decode_atoms(&init, &init_name);
            let moov = atoms
                .iter()
                .find_map(|a| match a {
                    mp4_atom::Any::Moov(m) => Some(m.clone()),
                    _ => None,
                })
                .expect("moov");
            assert!(moov.mvex.is_some(), "{init_name}: moov without mvex");
            let codecs = rep.codecs.clone().or(aset.codecs.clone()).expect("codecs");
            if is_video {
                let stsd = &moov.trak[0].mdia.minf.stbl.stsd;
                let avcc = match &stsd.codecs[0] {
                    mp4_atom::Codec::Avc1(a) => a.avcc.clone(),
                    c => panic!("{init_name}: expected avc1, got {c:?}"),
                };
                let from_avcc = format!(
                    "avc1.{:02x}{:02x}{:02x}",
                    avcc.avc_profile_indication,
                    avcc.profile_compatibility,
                    avcc.avc_level_indication
                );
                assert_eq!(codecs, from_avcc, "{id}: MPD codecs vs avcC");
                let hls_codecs = codecs_of(&codecs, &id, &master);
                assert_eq!(hls_codecs, codecs, "{id}: HLS and DASH video codecs differ");
                // HLS and DASH boundaries agree.
                assert_eq!(
                    tl.len(),
                    hls_starts[0].len(),
                    "{id}: DASH and HLS segment counts differ"
                );
                for (k, (t, d)) in tl.iter().enumerate() {
                    let start = *t as f64 / timescale - pto;
                    assert!(
                        (start - hls_starts[0][k]).abs() < 0.002,
                        "{id} seg {k}: DASH t {start} vs HLS {}",
                        hls_starts[0][k]
                    );
                    assert!(
                        (*d as f64 / timescale - hls_durs[0][k]).abs() < 0.002,
                        "{id} seg {k}: DASH d vs EXTINF"
                    );
                }
                match &dash_video_segments {
                    None => dash_video_segments = Some(tl.clone()),
                    Some(prev) => assert_eq!(prev, &tl, "{id}: video representations not aligned"),
                }
            } else {
                assert_eq!(codecs, "mp4a.40.2");
                assert!(
                    !aset.AudioChannelConfiguration.is_empty()
                        || !rep.AudioChannelConfiguration.is_empty(),
                    "AudioChannelConfiguration missing"
                );
            }
            let media_tmpl = tmpl.media.as_ref().unwrap();
            let start_number = tmpl.startNumber.unwrap_or(1);
            for (k, (t, _)) in tl.iter().enumerate() {
                let name = media_tmpl
                    .replace("$RepresentationID$", &id)
                    .replace("$Number%05d$", &format!("{:05}", start_number + k as u64));
                let seg_path = pkg.join("dash").join(&name);
                let seg = read(&seg_path);
                let atoms = decode_atoms(&seg, &name);
                let moof = atoms
                    .iter()
                    .find_map(|a| match a {
                        mp4_atom::Any::Moof(m) => Some(m.clone()),
                        _ => None,
                    })
                    .expect("moof");
                assert!(
                    atoms.iter().any(|a| matches!(a, mp4_atom::Any::Mdat(_))),
                    "{name}: no mdat"
                );
                let traf = &moof.traf[0];
                let tfdt = traf.tfdt.as_ref().expect("tfdt").base_media_decode_time;
                let first = traf.trun[0]
                    .samples
                    .iter()
                    .next()
                    .expect("trun has samples");
                // The first (IDR) sample is the earliest presented: tfdt + its offset is S@t.
                let ept = tfdt as i64 + first.cts.unwrap_or(0);
                assert_eq!(ept, *t as i64, "{name}: earliest presentation time vs S@t");
                if let Some(sidx) = atoms.iter().find_map(|a| match a {
                    mp4_atom::Any::Sidx(x) => Some(x.clone()),
                    _ => None,
                }) {
                    assert_eq!(sidx.earliest_presentation_time, *t, "{name}: sidx EPT");
                }
                let flags = first.flags.or(traf.tfhd.default_sample_flags).unwrap_or(0);
                assert_eq!(
                    flags & 0x0001_0000,
                    0,
                    "{name}: first sample is not a sync sample"
                );
                // Decodes with ffmpeg when joined to its init segment, first frame a keyframe at t.
                // Beside the package: each test has its own directory.
                let joined = pkg.with_file_name(format!("joined-{id}-{k}.mp4"));
                let mut buf = init.clone();
                buf.extend_from_slice(&seg);
                std::fs::write(&joined, &buf).unwrap();
                assert_decodes(&joined);
                if is_video {
                    let j = ffprobe_json(
                        &joined,
                        &[
                            "-select_streams",
                            "v:0",
                            "-show_entries",
                            "frame=pts_time,key_frame",
                            "-read_intervals",
                            "%+#1",
                        ],
                    );
                    let f = &j["frames"][0];
                    assert_eq!(f["key_frame"], 1, "{name}: first frame not a keyframe");
                    let pts: f64 = f["pts_time"].as_str().unwrap().parse().unwrap();
                    assert!(
                        (pts - *t as f64 / timescale).abs() < 0.002,
                        "{name}: first frame at {pts}, timeline says {}",
                        *t as f64 / timescale
                    );
                }
                std::fs::remove_file(&joined).ok();
            }
        }
    }
    assert_eq!(dash_audio, has_audio, "DASH audio presence vs HLS");
    // The whole presentations read end to end with ffmpeg's own HLS and DASH demuxers.
    assert_decodes(&pkg.join("hls/master.m3u8"));
    assert_decodes(&mpd_path);
    Report {
        sizes,
        codecs,
        has_audio,
        segments: hls_starts[0].len(),
        duration: total,
    }
}

/// The HLS CODECS video part of rung `id`.
fn codecs_of(_dash: &str, id: &str, master: &m3u8_rs::MasterPlaylist) -> String {
    let v = master
        .variants
        .iter()
        .find(|v| v.uri == format!("{id}/index.m3u8"))
        .expect("HLS variant for rep");
    v.codecs
        .clone()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string()
}

fn out_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix(&format!("abr-{name}-"))
        .tempdir_in(fixture_dir())
        .unwrap();
    let out = t.path().join("pkg");
    (t, out)
}

#[test]
fn full_hd_with_audio_default_ladder() {
    let src = fixture("1080p30", 9);
    let (_t, out) = out_dir("1080p");
    package(&src, &out, &[]);
    let r = verify(&out, &src);
    let names: Vec<_> = r.sizes.keys().cloned().collect();
    assert_eq!(names, ["1080p", "240p", "360p", "480p", "720p"]);
    assert_eq!(r.sizes["1080p"], (1920, 1080));
    assert_eq!(r.sizes["480p"], (854, 480));
    assert!(r.has_audio);
    assert_eq!(r.segments, 3, "9 s at 4 s segments");
    assert!(
        (r.duration - 9.0).abs() < 1.0 / 30.0,
        "duration {}",
        r.duration
    );
    assert!(out.join("dash/audio_128k/init.mp4").is_file());
}

#[test]
fn video_only_source_packages_without_audio() {
    let src = fixture("720p-noaudio", 6);
    let (t, out) = out_dir("noaudio");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    assert!(!r.has_audio);
    assert!(r.codecs.values().all(|c| !c.contains("mp4a")));
    assert_eq!(r.segments, 3);
}

#[test]
fn anamorphic_odd_width_becomes_square_pixels() {
    let src = fixture("sar480", 6);
    let (t, out) = out_dir("sar");
    let ladder = test_ladder(t.path());
    package(&src, &out, &["--ladder", ladder.to_str().unwrap()]);
    let r = verify(&out, &src);
    // 853x480 at SAR 3:2 displays as 1279.5x480: never upscaled past 480 lines, aspect kept.
    assert_eq!(
        r.sizes.keys().cloned().collect::<Vec<_>>(),
        ["240p", "360p"]
    );
    assert_eq!(r.sizes["360p"], (960, 360));
    let seg = out.join("hls/360p/seg_00001.ts");
    let j = ffprobe_json(
        &seg,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=sample_aspect_ratio",
        ],
    );
    let sar = j["streams"][0]["sample_aspect_ratio"]
        .as_str()
        .unwrap_or("1:1");
    assert_eq!(sar, "1:1");
}

#[test]
fn ten_bit_source_becomes_8bit_420() {
    let src = fixture("10bit", 5);
    let (t, out) = out_dir("10bit");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    assert!(
        r.codecs.values().all(|c| c.starts_with("avc1.64")),
        "High profile, not High10: {:?}",
        r.codecs
    );
}

#[test]
fn variable_frame_rate_source_is_cut_aligned() {
    let src = fixture("vfr", 6);
    let (t, out) = out_dir("vfr");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    assert!(r.segments >= 3);
}

#[test]
fn rotated_source_is_packaged_upright() {
    let src = fixture("rotated", 5);
    let (t, out) = out_dir("rotated");
    let ladder = test_ladder(t.path());
    package(
        &src,
        &out,
        &[
            "--ladder",
            ladder.to_str().unwrap(),
            "--segment-duration",
            "2",
        ],
    );
    let r = verify(&out, &src);
    // 1280x720 rotated 90° displays as 720x1280: portrait rungs named by their short side.
    assert_eq!(r.sizes["720p"], (720, 1280));
    assert_eq!(r.sizes["360p"], (360, 640));
}

#[test]
fn formats_option_writes_only_what_was_asked() {
    let src = fixture("720p-noaudio", 2);
    let t = tempfile::Builder::new()
        .prefix("abr-formats-")
        .tempdir_in(fixture_dir())
        .unwrap();
    let ladder = test_ladder(t.path());
    let hls = package(
        &src,
        &t.path().join("hls-only"),
        &["--ladder", ladder.to_str().unwrap(), "--formats", "hls"],
    );
    assert!(hls.join("hls/master.m3u8").is_file() && !hls.join("dash").exists());
    let dash = package(
        &src,
        &t.path().join("dash-only"),
        &["--ladder", ladder.to_str().unwrap(), "--formats", "dash"],
    );
    assert!(dash.join("dash/manifest.mpd").is_file() && !dash.join("hls").exists());
}
