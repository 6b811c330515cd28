//! HLS playlists (RFC 8216), written with m3u8-rs: one master playlist and one VOD media playlist
//! per variant.

use m3u8_rs::{
    MasterPlaylist, MediaPlaylist, MediaPlaylistType, MediaSegment, Resolution, VariantStream,
};

use crate::package::{segment_file_name, HlsVariant, PackageInfo};

/// `EXT-X-VERSION` of both playlist kinds: 3 is the lowest version that allows decimal `EXTINF`
/// durations, and nothing else written here needs a higher one (RFC 8216 §7).
pub const HLS_VERSION: usize = 3;

/// Media sequence number of the first segment; equal to the file number of `seg_00001.ts`.
pub const FIRST_MEDIA_SEQUENCE: u64 = 1;

/// URI of a variant's media playlist, relative to the master playlist.
pub fn media_playlist_uri(v: &HlsVariant) -> String {
    format!("{}/index.m3u8", v.name)
}

/// Writes the master playlist `hls/master.m3u8`: one `EXT-X-STREAM-INF` per variant, highest
/// peak bandwidth first.
pub fn master_playlist(p: &PackageInfo) -> Vec<u8> {
    let mut variants: Vec<&HlsVariant> = p.hls.iter().collect();
    // Stable: keeps the given order among equal bandwidths.
    variants.sort_by_key(|v| std::cmp::Reverse(v.peak_bandwidth));
    let playlist = MasterPlaylist {
        version: Some(HLS_VERSION),
        independent_segments: true,
        variants: variants.into_iter().map(variant_stream).collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    playlist
        .write_to(&mut out)
        .expect("writing to a Vec<u8> cannot fail");
    out
}

fn variant_stream(v: &HlsVariant) -> VariantStream {
    let rate = v.video.frame_rate;
    VariantStream {
        uri: media_playlist_uri(v),
        bandwidth: v.peak_bandwidth,
        average_bandwidth: Some(v.average_bandwidth),
        codecs: Some(v.codecs.clone()),
        resolution: Some(Resolution {
            width: v.video.width.into(),
            height: v.video.height.into(),
        }),
        // RFC 8216 §4.3.4.2: rounded to three decimal places (29.97002997… → 29.97).
        frame_rate: (rate.den != 0).then(|| (rate.as_f64() * 1000.0).round() / 1000.0),
        ..Default::default()
    }
}

/// Writes a variant's VOD media playlist `hls/<name>/index.m3u8`.
///
/// `EXTINF` values are the exact segment durations (printed with the shortest decimal that
/// round-trips m3u8-rs's `f32`, about 1 µs resolution); `EXT-X-TARGETDURATION` is the ceiling of
/// the longest one, so it is ≥ every `EXTINF` rounded to the nearest integer as RFC 8216 requires.
/// A `timescale` of 0 is treated as 1.
pub fn media_playlist(v: &HlsVariant) -> Vec<u8> {
    let timescale = u64::from(v.timescale.max(1));
    let max_ticks = v.segments.iter().map(|s| s.duration).max().unwrap_or(0);
    let playlist = MediaPlaylist {
        version: Some(HLS_VERSION),
        independent_segments: true,
        target_duration: max_ticks.div_ceil(timescale),
        media_sequence: FIRST_MEDIA_SEQUENCE,
        playlist_type: Some(MediaPlaylistType::Vod),
        end_list: true,
        segments: v
            .segments
            .iter()
            .zip(1u32..)
            .map(|(s, number)| MediaSegment {
                uri: segment_file_name(number, "ts"),
                duration: (s.duration as f64 / timescale as f64) as f32,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    playlist
        .write_to(&mut out)
        .expect("writing to a Vec<u8> cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{Ratio, Segment, VideoInfo};
    use m3u8_rs::{parse_playlist_res, Playlist};

    const TS: u32 = 90_000;

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

    fn variant(name: &str, width: u32, height: u32, peak: u64, durations: &[u64]) -> HlsVariant {
        HlsVariant {
            name: name.into(),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            video: VideoInfo {
                width,
                height,
                frame_rate: Ratio {
                    num: 30000,
                    den: 1001,
                },
            },
            peak_bandwidth: peak,
            average_bandwidth: peak * 3 / 4,
            timescale: TS,
            segments: segments(durations),
        }
    }

    fn package() -> PackageInfo {
        // 6.006 s, 6.006011 s, 6.5 s (rounds to 7 → target 7), 1.234567 s tail.
        let durations = [540_540, 540_541, 585_000, 111_111];
        PackageInfo {
            duration_secs: 19.746,
            segment_duration_secs: 6.0,
            // Deliberately lowest first: the writer must sort.
            hls: vec![
                variant("360p", 640, 360, 900_000, &durations),
                variant("720p", 1280, 720, 3_000_000, &durations),
            ],
            dash_video: vec![],
            dash_audio: None,
        }
    }

    fn parse(bytes: &[u8]) -> Playlist {
        match parse_playlist_res(bytes) {
            Ok(p) => p,
            Err(e) => panic!(
                "unparsable playlist: {e:?}\n{}",
                String::from_utf8_lossy(bytes)
            ),
        }
    }

    #[test]
    fn master_round_trips() {
        let p = package();
        let bytes = master_playlist(&p);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n"));
        assert!(text.contains("CODECS=\"avc1.64001f,mp4a.40.2\""), "{text}");
        assert!(text.contains("FRAME-RATE=29.97,") || text.contains("FRAME-RATE=29.97\n"));
        let Playlist::MasterPlaylist(m) = parse(&bytes) else {
            panic!("not a master playlist")
        };
        assert_eq!(m.version, Some(HLS_VERSION));
        assert!(m.independent_segments);
        assert_eq!(m.variants.len(), 2);
        let expected = [&p.hls[1], &p.hls[0]];
        for (got, want) in m.variants.iter().zip(expected) {
            assert!(!got.is_i_frame);
            assert_eq!(got.uri, format!("{}/index.m3u8", want.name));
            assert_eq!(got.bandwidth, want.peak_bandwidth);
            assert_eq!(got.average_bandwidth, Some(want.average_bandwidth));
            assert_eq!(got.codecs.as_deref(), Some(want.codecs.as_str()));
            let res = got.resolution.unwrap();
            assert_eq!(
                (res.width, res.height),
                (want.video.width.into(), want.video.height.into())
            );
            assert_eq!(got.frame_rate, Some(29.97));
            assert_eq!(got.other_attributes, None);
        }
    }

    #[test]
    fn integer_frame_rate_has_no_decimals() {
        let mut p = package();
        p.hls[0].video.frame_rate = Ratio { num: 25, den: 1 };
        let text = String::from_utf8(master_playlist(&p)).unwrap();
        assert!(text.contains("FRAME-RATE=25\n"), "{text}");
    }

    #[test]
    fn media_round_trips() {
        let v = &package().hls[0];
        let bytes = media_playlist(v);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#EXTINF:6.006011,\nseg_00002.ts\n"), "{text}");
        let Playlist::MediaPlaylist(m) = parse(&bytes) else {
            panic!("not a media playlist")
        };
        assert_eq!(m.version, Some(HLS_VERSION));
        assert!(m.independent_segments);
        assert!(m.end_list);
        assert_eq!(m.playlist_type, Some(MediaPlaylistType::Vod));
        assert_eq!(m.media_sequence, FIRST_MEDIA_SEQUENCE);
        assert_eq!(m.target_duration, 7);
        assert_eq!(m.segments.len(), v.segments.len());
        let mut sum = 0.0;
        for (k, (got, want)) in m.segments.iter().zip(&v.segments).enumerate() {
            assert_eq!(got.uri, segment_file_name(k as u32 + 1, "ts"));
            let exact = want.duration as f64 / TS as f64;
            assert!(
                (got.duration as f64 - exact).abs() < 1e-6,
                "{} vs {exact}",
                got.duration
            );
            assert!(m.target_duration >= got.duration.round() as u64);
            sum += got.duration as f64;
        }
        let total: u64 = v.segments.iter().map(|s| s.duration).sum();
        assert!((sum - total as f64 / TS as f64).abs() < 1e-5);
    }

    #[test]
    fn target_duration_of_whole_seconds_is_exact() {
        let v = variant("a", 640, 360, 1, &[540_000, 540_000, 90_000]);
        let Playlist::MediaPlaylist(m) = parse(&media_playlist(&v)) else {
            panic!("not a media playlist")
        };
        assert_eq!(m.target_duration, 6);
        assert_eq!(m.segments[0].duration, 6.0);
    }

    #[test]
    fn empty_inputs_do_not_panic() {
        let mut v = variant("a", 640, 360, 1, &[]);
        v.timescale = 0;
        v.video.frame_rate = Ratio { num: 0, den: 0 };
        let _ = media_playlist(&v);
        let p = PackageInfo {
            hls: vec![v],
            ..package()
        };
        let _ = master_playlist(&p);
    }
}
