//! Manifest writers: HLS playlists (m3u8-rs) and the DASH MPD (dash-mpd-core).

pub mod dash;
pub mod hls;
