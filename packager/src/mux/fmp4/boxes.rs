//! ISO BMFF box serialisation: a tiny writer (open a box, back-patch its size) and one helper
//! per box the fMP4 muxer emits. No muxing state lives here: callers pass every field value.
//!
//! Field layouts follow ISO/IEC 14496-12 (boxes), 14496-14 (`esds`) and 14496-15 (`avc1`).

/// Appends boxes to a byte buffer.
#[derive(Debug, Default)]
pub(super) struct BoxWriter {
    buf: Vec<u8>,
}

impl BoxWriter {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(super) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(super) fn u24(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes()[1..]);
    }

    pub(super) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(super) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    pub(super) fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Overwrites the 32-bit value at `pos` (a field reserved earlier).
    pub(super) fn patch_u32(&mut self, pos: usize, v: u32) {
        self.buf[pos..pos + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes a box of type `kind` whose body is written by `body`, then back-patches its size.
    ///
    /// Sizes are 32-bit: callers keep boxes under 4 GiB (the media segment writer checks
    /// its `mdat`; everything else is small).
    pub(super) fn boxed(&mut self, kind: &[u8; 4], body: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        self.u32(0);
        self.bytes(kind);
        body(self);
        let size = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.patch_u32(start, size);
    }

    /// Writes a full box (version and 24-bit flags before the body).
    pub(super) fn full(
        &mut self,
        kind: &[u8; 4],
        version: u8,
        flags: u32,
        body: impl FnOnce(&mut Self),
    ) {
        self.boxed(kind, |w| {
            w.u8(version);
            w.u24(flags);
            body(w);
        });
    }

    /// Writes an MPEG-4 descriptor (ISO/IEC 14496-1 §8.3.3): tag, minimal base-128 size, body.
    /// Bodies are limited to 2^28 - 1 bytes (the largest four-byte size); longer bodies are cut.
    fn descriptor(&mut self, tag: u8, body: impl FnOnce(&mut Self)) {
        let mut inner = BoxWriter::new();
        body(&mut inner);
        inner.buf.truncate(0x0fff_ffff);
        let len = inner.buf.len();
        self.u8(tag);
        let groups = (1..4).take_while(|&i| len >> (7 * i) != 0).count() + 1;
        for i in (0..groups).rev() {
            let more = if i > 0 { 0x80 } else { 0 };
            self.u8(more | ((len >> (7 * i)) & 0x7f) as u8);
        }
        self.bytes(&inner.buf);
    }
}

/// The identity transformation matrix of `mvhd`/`tkhd`.
const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

fn matrix(w: &mut BoxWriter) {
    UNITY_MATRIX.iter().for_each(|&v| w.u32(v));
}

/// `ftyp` or `styp`: major brand, minor version 0, compatible brands.
pub(super) fn file_type(
    w: &mut BoxWriter,
    kind: &[u8; 4],
    major: &[u8; 4],
    compatible: &[&[u8; 4]],
) {
    w.boxed(kind, |w| {
        w.bytes(major);
        w.u32(0);
        compatible.iter().for_each(|b| w.bytes(*b));
    });
}

/// `mvhd` (version 0, duration 0: the movie is fragmented).
pub(super) fn mvhd(w: &mut BoxWriter, timescale: u32, next_track_id: u32) {
    w.full(b"mvhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(timescale);
        w.u32(0); // duration
        w.u32(0x0001_0000); // rate 1.0
        w.u16(0x0100); // volume 1.0
        w.zeros(2 + 8); // reserved
        matrix(w);
        w.zeros(24); // pre_defined
        w.u32(next_track_id);
    });
}

/// `tkhd` (version 0, enabled and in movie, duration 0). `width`/`height` are in pixels and are
/// written as 16.16 fixed point (0 for audio); audio tracks get volume 1.0.
pub(super) fn tkhd(w: &mut BoxWriter, track_id: u32, audio: bool, width: u16, height: u16) {
    w.full(b"tkhd", 0, 0x3, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(track_id);
        w.u32(0); // reserved
        w.u32(0); // duration
        w.zeros(8); // reserved
        w.u16(0); // layer
        w.u16(0); // alternate_group
        w.u16(if audio { 0x0100 } else { 0 });
        w.u16(0); // reserved
        matrix(w);
        w.u32(u32::from(width) << 16);
        w.u32(u32::from(height) << 16);
    });
}

/// `mdhd` (version 0, duration 0). `language` must be three lowercase ASCII letters
/// (ISO 639-2/T); anything else is written as `und`.
pub(super) fn mdhd(w: &mut BoxWriter, timescale: u32, language: &str) {
    let lang = match language.as_bytes() {
        l @ [a, b, c] if l.iter().all(u8::is_ascii_lowercase) => [*a, *b, *c],
        _ => *b"und",
    };
    let packed = lang
        .iter()
        .fold(0u16, |acc, &c| (acc << 5) | u16::from(c - 0x60));
    w.full(b"mdhd", 0, 0, |w| {
        w.u32(0); // creation_time
        w.u32(0); // modification_time
        w.u32(timescale);
        w.u32(0); // duration
        w.u16(packed);
        w.u16(0); // pre_defined
    });
}

/// `hdlr` with a null-terminated name.
pub(super) fn hdlr(w: &mut BoxWriter, handler: &[u8; 4], name: &str) {
    w.full(b"hdlr", 0, 0, |w| {
        w.u32(0); // pre_defined
        w.bytes(handler);
        w.zeros(12); // reserved
        w.bytes(name.as_bytes());
        w.u8(0);
    });
}

/// `vmhd` (flags 1 as required, copy mode).
pub(super) fn vmhd(w: &mut BoxWriter) {
    w.full(b"vmhd", 0, 1, |w| w.zeros(2 + 6));
}

/// `smhd` (centre balance).
pub(super) fn smhd(w: &mut BoxWriter) {
    w.full(b"smhd", 0, 0, |w| w.zeros(4));
}

/// `dinf` with a `dref` holding one self-contained `url ` entry.
pub(super) fn dinf(w: &mut BoxWriter) {
    w.boxed(b"dinf", |w| {
        w.full(b"dref", 0, 0, |w| {
            w.u32(1);
            w.full(b"url ", 0, 1, |_| {});
        });
    });
}

/// The empty sample tables of a fragmented track (`stts`, `stsc`, `stsz`, `stco`); call after
/// `stsd` inside `stbl`.
pub(super) fn empty_sample_tables(w: &mut BoxWriter) {
    w.full(b"stts", 0, 0, |w| w.u32(0));
    w.full(b"stsc", 0, 0, |w| w.u32(0));
    w.full(b"stsz", 0, 0, |w| {
        w.u32(0); // sample_size
        w.u32(0); // sample_count
    });
    w.full(b"stco", 0, 0, |w| w.u32(0));
}

/// `stsd` with one sample entry written by `entry`.
pub(super) fn stsd(w: &mut BoxWriter, entry: impl FnOnce(&mut BoxWriter)) {
    w.full(b"stsd", 0, 0, |w| {
        w.u32(1);
        entry(w);
    });
}

/// SampleEntry header: 6 reserved bytes and data_reference_index 1.
fn sample_entry_header(w: &mut BoxWriter) {
    w.zeros(6);
    w.u16(1);
}

/// `avc1` sample entry with its `avcC` (the record from [`crate::codec::avcc_decoder_config`])
/// and a square-pixel `pasp`.
pub(super) fn avc1(w: &mut BoxWriter, width: u16, height: u16, avcc: &[u8]) {
    w.boxed(b"avc1", |w| {
        sample_entry_header(w);
        w.u16(0); // pre_defined
        w.u16(0); // reserved
        w.zeros(12); // pre_defined
        w.u16(width);
        w.u16(height);
        w.u32(0x0048_0000); // horizresolution 72 dpi
        w.u32(0x0048_0000); // vertresolution 72 dpi
        w.u32(0); // reserved
        w.u16(1); // frame_count
        w.zeros(32); // compressorname (empty Pascal string)
        w.u16(0x0018); // depth
        w.u16(0xffff); // pre_defined = -1
        w.boxed(b"avcC", |w| w.bytes(avcc));
        w.boxed(b"pasp", |w| {
            w.u32(1);
            w.u32(1);
        });
    });
}

/// `mp4a` sample entry (16-bit samples) with an `esds` carrying `asc` as DecoderSpecificInfo.
/// Sample rates above 65535 Hz do not fit the 16.16 field and are written as 0 (the
/// AudioSpecificConfig is authoritative).
pub(super) fn mp4a(w: &mut BoxWriter, sample_rate: u32, channels: u16, asc: &[u8]) {
    w.boxed(b"mp4a", |w| {
        sample_entry_header(w);
        w.zeros(8); // version, revision level, vendor
        w.u16(channels);
        w.u16(16); // samplesize
        w.u16(0); // pre_defined
        w.u16(0); // reserved
        w.u32(if sample_rate <= 0xffff {
            sample_rate << 16
        } else {
            0
        });
        esds(w, asc);
    });
}

/// `esds` (ISO/IEC 14496-14 §3.1.2): ES_Descriptor { DecoderConfigDescriptor { AAC, audio
/// stream, DecoderSpecificInfo = `asc` }, SLConfigDescriptor { predefined = 2 } }.
fn esds(w: &mut BoxWriter, asc: &[u8]) {
    w.full(b"esds", 0, 0, |w| {
        w.descriptor(0x03, |w| {
            w.u16(0); // ES_ID: 0 in MP4 files
            w.u8(0); // no dependency, URL or OCR stream; priority 0
            w.descriptor(0x04, |w| {
                w.u8(0x40); // objectTypeIndication: MPEG-4 Audio
                w.u8((0x05 << 2) | 1); // streamType audio, upStream 0, reserved 1
                w.u24(0); // bufferSizeDB
                w.u32(0); // maxBitrate
                w.u32(0); // avgBitrate
                w.descriptor(0x05, |w| w.bytes(asc));
            });
            w.descriptor(0x06, |w| w.u8(2));
        });
    });
}

/// `mvex` with the `trex` of one track (sample description 1, no defaults: every `trun`
/// carries per-sample values).
pub(super) fn mvex(w: &mut BoxWriter, track_id: u32) {
    w.boxed(b"mvex", |w| {
        w.full(b"trex", 0, 0, |w| {
            w.u32(track_id);
            w.u32(1); // default_sample_description_index
            w.u32(0); // default_sample_duration
            w.u32(0); // default_sample_size
            w.u32(0); // default_sample_flags
        });
    });
}

/// One `sidx` reference (a media subsegment).
pub(super) struct SidxReference {
    /// Bytes from the first byte after the `sidx` to the end of the subsegment (< 2^31).
    pub referenced_size: u32,
    /// Duration in the track timescale.
    pub duration: u32,
    /// Whether the subsegment starts with a SAP.
    pub starts_with_sap: bool,
    /// SAP type (0–7).
    pub sap_type: u8,
}

/// `sidx` version 1 with `first_offset` 0 and one reference.
pub(super) fn sidx(
    w: &mut BoxWriter,
    track_id: u32,
    timescale: u32,
    earliest_pts: u64,
    r: &SidxReference,
) {
    w.full(b"sidx", 1, 0, |w| {
        w.u32(track_id); // reference_ID
        w.u32(timescale);
        w.u64(earliest_pts);
        w.u64(0); // first_offset
        w.u16(0); // reserved
        w.u16(1); // reference_count
        w.u32(r.referenced_size & 0x7fff_ffff); // reference_type 0 (media)
        w.u32(r.duration);
        w.u32((u32::from(r.starts_with_sap) << 31) | (u32::from(r.sap_type & 7) << 28));
    });
}

/// `mfhd`.
pub(super) fn mfhd(w: &mut BoxWriter, sequence_number: u32) {
    w.full(b"mfhd", 0, 0, |w| w.u32(sequence_number));
}

/// `tfhd` with default-base-is-moof and no other defaults.
pub(super) fn tfhd(w: &mut BoxWriter, track_id: u32) {
    w.full(b"tfhd", 0, 0x02_0000, |w| w.u32(track_id));
}

/// `tfdt` version 1.
pub(super) fn tfdt(w: &mut BoxWriter, base_media_decode_time: u64) {
    w.full(b"tfdt", 1, 0, |w| w.u64(base_media_decode_time));
}

/// One `trun` sample.
pub(super) struct TrunSample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
    pub composition_offset: i32,
}

/// `trun` version 1 with per-sample duration, size and flags, and per-sample composition offsets
/// when `with_cts`. Returns the position of the data_offset field (written as 0) for the caller
/// to patch once the `moof` size is known.
pub(super) fn trun(w: &mut BoxWriter, samples: &[TrunSample], with_cts: bool) -> usize {
    let flags = 0x001 | 0x100 | 0x200 | 0x400 | if with_cts { 0x800 } else { 0 };
    let mut data_offset_pos = 0;
    w.full(b"trun", 1, flags, |w| {
        w.u32(samples.len() as u32);
        data_offset_pos = w.len();
        w.i32(0);
        for s in samples {
            w.u32(s.duration);
            w.u32(s.size);
            w.u32(s.flags);
            if with_cts {
                w.i32(s.composition_offset);
            }
        }
    });
    data_offset_pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_back_patched() {
        let mut w = BoxWriter::new();
        w.boxed(b"moov", |w| {
            w.full(b"mfhd", 1, 0x02_0001, |w| w.u32(7));
            w.boxed(b"free", |_| {});
        });
        assert_eq!(
            w.into_bytes(),
            [
                0, 0, 0, 32, b'm', b'o', b'o', b'v', //
                0, 0, 0, 16, b'm', b'f', b'h', b'd', 1, 2, 0, 1, 0, 0, 0, 7, //
                0, 0, 0, 8, b'f', b'r', b'e', b'e',
            ]
        );
    }

    #[test]
    fn descriptor_sizes_are_minimal_base128() {
        for (len, size_bytes) in [
            (0usize, vec![0x00]),
            (5, vec![0x05]),
            (127, vec![0x7f]),
            (128, vec![0x81, 0x00]),
            (300, vec![0x82, 0x2c]),
        ] {
            let mut w = BoxWriter::new();
            w.descriptor(0x05, |w| w.zeros(len));
            let out = w.into_bytes();
            assert_eq!(out[0], 0x05);
            assert_eq!(out[1..1 + size_bytes.len()], size_bytes[..], "len {len}");
            assert_eq!(out.len(), 1 + size_bytes.len() + len);
        }
    }

    #[test]
    fn language_packing() {
        let mut w = BoxWriter::new();
        mdhd(&mut w, 1000, "und");
        let und = w.into_bytes();
        assert_eq!(und[28..30], [0x55, 0xc4]);
        let mut w = BoxWriter::new();
        mdhd(&mut w, 1000, "English");
        assert_eq!(w.into_bytes()[28..30], [0x55, 0xc4]);
        let mut w = BoxWriter::new();
        mdhd(&mut w, 1000, "eng");
        assert_eq!(w.into_bytes()[28..30], [0x15, 0xc7]);
    }
}
