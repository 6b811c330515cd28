//! The structural checks of a package with independent tools, shared by the packaging tests
//! (`tests/package.rs`, `tests/shard.rs`): ffprobe/ffmpeg decode every segment, m3u8-rs and
//! dash-mpd-core parse the manifests back, mp4-atom parses every fMP4 box, xmllint validates the
//! MPD against the MPEG-DASH schema.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use super::*;
use m3u8_rs::Playlist;

/// What the checks found, for shape-specific assertions.
#[derive(Debug)]
pub struct Report {
    /// rung name → (width, height)
    pub sizes: BTreeMap<String, (u64, u64)>,
    /// rung name → CODECS of the HLS variant
    pub codecs: BTreeMap<String, String>,
    pub has_audio: bool,
    pub segments: usize,
    pub duration: f64,
}

pub fn read(p: &Path) -> Vec<u8> {
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

pub fn expand_timeline(st: &dash_mpd_core::SegmentTimeline) -> Vec<(u64, u64)> {
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

pub fn decode_atoms(bytes: &[u8], what: &str) -> Vec<mp4_atom::Any> {
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

pub fn verify(pkg: &Path, source: &Path) -> Report {
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
                // Beside the package, named after it: packages may share a directory.
                let joined = pkg.with_file_name(format!(
                    "joined-{}-{id}-{k}.mp4",
                    pkg.file_name().unwrap().to_string_lossy()
                ));
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
