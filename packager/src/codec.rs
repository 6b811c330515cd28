//! Codec bitstream helpers: H.264 Annex B → AVCC conversion, parameter-set parsing and RFC 6381
//! codec strings. Pure functions over byte slices; malformed input yields [`CodecError`], never a
//! panic.

use thiserror::Error;

/// H.264 NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// H.264 NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// H.264 NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// A bitstream could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The buffer ended before a required field.
    #[error("{what} is truncated")]
    Truncated {
        /// What was being parsed.
        what: &'static str,
    },
    /// A NAL unit of another type was given where an SPS was expected.
    #[error("expected an SPS NAL unit (type 7), got type {0}")]
    NotSps(u8),
    /// The AudioSpecificConfig declares audio object type 0 ("null").
    #[error("AudioSpecificConfig has audio object type 0")]
    NullAudioObjectType,
}

/// Result alias for this module.
pub type Result<T, E = CodecError> = std::result::Result<T, E>;

/// Iterates the NAL units of an H.264 Annex B buffer (3- or 4-byte start codes).
///
/// Yielded units start with the NAL header byte; start codes, trailing zero bytes and bytes
/// before the first start code are not part of any unit. Empty units are skipped.
pub fn nal_units(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = find_start_code(buf).map_or(&[][..], |(_, end)| &buf[end..]);
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (nal, next) = match find_start_code(rest) {
            Some((start, end)) => (&rest[..start], &rest[end..]),
            None => (rest, &[][..]),
        };
        rest = next;
        // A 4-byte start code (or trailing_zero_8bits) leaves zeros at the end of the unit.
        let len = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if len > 0 {
            return Some(&nal[..len]);
        }
    })
}

/// Position of the first `00 00 01` in `buf`: (index of its first byte, index after it).
fn find_start_code(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(3)
        .position(|w| w == [0, 0, 1])
        .map(|i| (i, i + 3))
}

/// The `nal_unit_type` of a NAL unit (low 5 bits of its header byte), if it is not empty.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// One H.264 access unit converted for MP4 storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvcAccessUnit {
    /// The NAL units, each prefixed by its 4-byte big-endian length, without SPS, PPS and AUD.
    pub data: Vec<u8>,
    /// The last in-band SPS, if the access unit carried one (x264 repeats it on keyframes).
    pub sps: Option<Vec<u8>>,
    /// The last in-band PPS, if any.
    pub pps: Option<Vec<u8>>,
}

/// Converts an Annex B access unit to AVCC (4-byte length prefixes), moving the parameter sets
/// out (they go into the `avcC` box) and dropping access unit delimiters.
pub fn annexb_to_avcc(au: &[u8]) -> AvcAccessUnit {
    let mut out = AvcAccessUnit {
        data: Vec::with_capacity(au.len() + 16),
        ..Default::default()
    };
    for nal in nal_units(au) {
        match nal_type(nal) {
            Some(NAL_SPS) => out.sps = Some(nal.to_vec()),
            Some(NAL_PPS) => out.pps = Some(nal.to_vec()),
            Some(NAL_AUD) => {}
            _ => {
                // A NAL unit of 4 GiB cannot come out of an encoder; it is unrepresentable here.
                let Ok(len) = u32::try_from(nal.len()) else {
                    continue;
                };
                out.data.extend_from_slice(&len.to_be_bytes());
                out.data.extend_from_slice(nal);
            }
        }
    }
    out
}

/// RFC 6381 codec string of an H.264 stream, `avc1.PPCCLL` (profile_idc, constraint flags,
/// level_idc in hex), from its SPS NAL unit (header byte included). E.g. `avc1.64001f`.
pub fn avc_codec_string(sps: &[u8]) -> Result<String> {
    let [profile, constraints, level] = sps_profile(sps)?;
    Ok(format!("avc1.{profile:02x}{constraints:02x}{level:02x}"))
}

/// profile_idc, constraint_set flags and level_idc of an SPS NAL unit.
fn sps_profile(sps: &[u8]) -> Result<[u8; 3]> {
    let ty = nal_type(sps).ok_or(CodecError::Truncated { what: "SPS" })?;
    if ty != NAL_SPS {
        return Err(CodecError::NotSps(ty));
    }
    match unescape_rbsp(&sps[1..]).get(..3) {
        Some(&[p, c, l]) => Ok([p, c, l]),
        _ => Err(CodecError::Truncated { what: "SPS" }),
    }
}

/// Removes emulation prevention bytes (`00 00 03` → `00 00`) from a NAL payload.
fn unescape_rbsp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// MSB-first bit reader over an RBSP with exp-Golomb decoding.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    /// `ue(v)`: unsigned exp-Golomb code (values up to 2^31 - 2).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 30 {
                return None;
            }
        }
        let mut suffix = 0;
        for _ in 0..zeros {
            suffix = (suffix << 1) | self.bit()?;
        }
        Some((1 << zeros) - 1 + suffix)
    }
}

/// Chroma format and bit depths of an SPS: (chroma_format_idc, bit_depth_luma,
/// bit_depth_chroma). `None` if the SPS does not carry them or cannot be parsed.
fn sps_chroma(sps: &[u8]) -> Option<(u8, u8, u8)> {
    let rbsp = unescape_rbsp(sps.get(1..)?);
    let profile = *rbsp.first()?;
    // Profiles whose SPS carries chroma_format_idc and bit depths (H.264 §7.3.2.1.1).
    if ![100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135].contains(&profile) {
        return None;
    }
    let mut r = BitReader {
        data: rbsp.get(3..)?,
        pos: 0,
    };
    let _seq_parameter_set_id = r.ue()?;
    let chroma_format_idc = r.ue()?;
    if chroma_format_idc == 3 {
        let _separate_colour_plane_flag = r.bit()?;
    }
    let luma = r.ue()?;
    let chroma = r.ue()?;
    if chroma_format_idc > 3 || luma > 6 || chroma > 6 {
        return None;
    }
    Some((chroma_format_idc as u8, luma as u8 + 8, chroma as u8 + 8))
}

/// The `avcC` box payload (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 §5.3.3.1) for one
/// SPS and one PPS (NAL units with header bytes), with 4-byte NAL length fields.
///
/// For the High profiles (100, 110, 122, 244) the chroma format and bit depths are parsed from
/// the SPS, falling back to 4:2:0 8-bit. Profile bytes of an SPS too short to hold them are
/// written as 0 ([`avc_codec_string`] reports such an SPS as an error). Parameter sets longer
/// than 65535 bytes (impossible for valid streams) are truncated to fit their 16-bit lengths.
pub fn avcc_decoder_config(sps: &[u8], pps: &[u8]) -> Vec<u8> {
    let [profile, constraints, level] = sps_profile(sps).unwrap_or([0; 3]);
    let sps = &sps[..sps.len().min(usize::from(u16::MAX))];
    let pps = &pps[..pps.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(sps.len() + pps.len() + 15);
    // configurationVersion, profile, compatibility, level, 6 reserved bits + lengthSizeMinusOne.
    out.extend_from_slice(&[1, profile, constraints, level, 0xfc | 3]);
    out.push(0xe0 | 1); // 3 reserved bits + numOfSequenceParameterSets
    out.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    out.extend_from_slice(sps);
    out.push(1); // numOfPictureParameterSets
    out.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    out.extend_from_slice(pps);
    if matches!(profile, 100 | 110 | 122 | 244) {
        let (chroma_format, luma, chroma) = sps_chroma(sps).unwrap_or((1, 8, 8));
        out.push(0xfc | chroma_format);
        out.push(0xf8 | (luma - 8));
        out.push(0xf8 | (chroma - 8));
        out.push(0); // numOfSequenceParameterSetExt
    }
    out
}

/// RFC 6381 codec string of an AAC stream, `mp4a.40.<audioObjectType>`, from its
/// AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1; escape value 31 handled). E.g. `mp4a.40.2`.
pub fn aac_codec_string(asc: &[u8]) -> Result<String> {
    let first = *asc.first().ok_or(CodecError::Truncated {
        what: "AudioSpecificConfig",
    })?;
    let mut aot = first >> 3;
    if aot == 31 {
        let second = *asc.get(1).ok_or(CodecError::Truncated {
            what: "AudioSpecificConfig",
        })?;
        aot = 32 + (((first & 0x07) << 3) | (second >> 5));
    }
    if aot == 0 {
        return Err(CodecError::NullAudioObjectType);
    }
    Ok(format!("mp4a.40.{aot}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Parameter sets emitted by libx264 (ffmpeg 5.1) for 320x240 testsrc2 at various settings.
    const SPS_HIGH: &str = "6764000dacd94141fb0110000003001000000303c0f1429960";
    const PPS_HIGH: &str = "68ebe3cb22c0";
    const SPS_BASELINE: &str = "6742c00dd90141fb0110000003001000000303c0f142a480";
    const SPS_MAIN: &str = "674d400deca0a0fd8088000003000800000301e078a14cb0";
    const SPS_HIGH444: &str = "67f4000d919b28283f6022000003000200000300781e28532c";
    const SPS_HIGH10: &str = "676e000da6cd94141fb0110000030001000003003c0f142996";
    const SPS_HIGH422: &str = "677a000dbcd94141fb0110000003001000000303c0f1429960";

    #[test]
    fn nal_units_handle_both_start_code_lengths() {
        let buf = [
            0xff, 0xee, // garbage before the first start code
            0, 0, 0, 1, 0x09, 0xf0, // AUD, 4-byte start code
            0, 0, 1, 0x67, 0x64, 0x1f, // SPS, 3-byte start code
            0, 0, 0, 1, 0x68, 0xeb, 0x00, 0x00, // PPS with trailing zeros
            0, 0, 1, // empty unit
            0, 0, 1, 0x65, 0x88, 0x00, 0x00, 0x03, 0x01, // IDR slice with an escaped byte
        ];
        let nals: Vec<&[u8]> = nal_units(&buf).collect();
        assert_eq!(
            nals,
            [
                &[0x09, 0xf0][..],
                &[0x67, 0x64, 0x1f],
                &[0x68, 0xeb],
                &[0x65, 0x88, 0, 0, 3, 1]
            ]
        );
        assert_eq!(
            nals.iter()
                .map(|n| nal_type(n).unwrap())
                .collect::<Vec<_>>(),
            [9, 7, 8, 5]
        );
        assert_eq!(nal_type(&[]), None);
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn annexb_to_avcc_strips_parameter_sets_and_aud() {
        let sps = hex(SPS_HIGH);
        let pps = hex(PPS_HIGH);
        let mut au = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1];
        au.extend_from_slice(&sps);
        au.extend_from_slice(&[0, 0, 1]);
        au.extend_from_slice(&pps);
        au.extend_from_slice(&[0, 0, 1, 0x06, 0x05, 0x01, 0x80]); // SEI
        au.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]); // IDR slice
        let out = annexb_to_avcc(&au);
        assert_eq!(out.sps.as_deref(), Some(&sps[..]));
        assert_eq!(out.pps.as_deref(), Some(&pps[..]));
        assert_eq!(
            out.data,
            [0, 0, 0, 4, 0x06, 0x05, 0x01, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );

        let plain = annexb_to_avcc(&[0, 0, 1, 0x41, 0x9a]);
        assert_eq!(
            plain,
            AvcAccessUnit {
                data: vec![0, 0, 0, 2, 0x41, 0x9a],
                sps: None,
                pps: None
            }
        );
        assert_eq!(annexb_to_avcc(&[]), AvcAccessUnit::default());
    }

    #[test]
    fn avc_codec_strings() {
        assert_eq!(avc_codec_string(&hex(SPS_HIGH)).unwrap(), "avc1.64000d");
        assert_eq!(avc_codec_string(&hex(SPS_BASELINE)).unwrap(), "avc1.42c00d");
        assert_eq!(avc_codec_string(&hex(SPS_MAIN)).unwrap(), "avc1.4d400d");
        assert_eq!(
            avc_codec_string(&[0x67, 0x64, 0x00, 0x1f, 0xac]).unwrap(),
            "avc1.64001f"
        );
        assert_eq!(avc_codec_string(&hex(PPS_HIGH)), Err(CodecError::NotSps(8)));
        assert_eq!(
            avc_codec_string(&[0x67, 0x64, 0x00]),
            Err(CodecError::Truncated { what: "SPS" })
        );
        assert_eq!(
            avc_codec_string(&[]),
            Err(CodecError::Truncated { what: "SPS" })
        );
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            [0, 0, 1, 0, 0, 0, 0]
        );
        assert_eq!(unescape_rbsp(&[0, 3, 0, 0, 0, 3]), [0, 3, 0, 0, 0]);
    }

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 0001000 → 0, 1, 2, 3, 7
        let data = [0b1010_0110, 0b0100_0001, 0b0000_0000];
        let mut r = BitReader {
            data: &data,
            pos: 0,
        };
        let got: Vec<u32> = (0..5).map(|_| r.ue().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 7]);
        assert_eq!(r.ue(), None);
    }

    #[test]
    fn sps_chroma_formats() {
        assert_eq!(sps_chroma(&hex(SPS_HIGH)), Some((1, 8, 8)));
        assert_eq!(sps_chroma(&hex(SPS_HIGH444)), Some((3, 8, 8)));
        assert_eq!(sps_chroma(&hex(SPS_HIGH10)), Some((1, 10, 10)));
        assert_eq!(sps_chroma(&hex(SPS_HIGH422)), Some((2, 8, 8)));
        assert_eq!(sps_chroma(&hex(SPS_MAIN)), None);
        // An escaped SPS: without unescaping, the 03 would be read as sps_id = ue(000000 1 1...).
        // profile 100, constraints 0, level 0, [03], sps_id 0, chroma 3, separate 0, 10-bit, 10-bit.
        let escaped = [0x67, 100, 0x00, 0x00, 0x03, 0b1001_0000, 0b1101_1100];
        assert_eq!(sps_chroma(&escaped), Some((3, 10, 10)));
        assert_eq!(avc_codec_string(&escaped).unwrap(), "avc1.640000");
        assert_eq!(sps_chroma(&[0x67, 100, 0, 0x1f]), None);
    }

    #[test]
    fn avcc_records() {
        let sps = hex(SPS_HIGH);
        let pps = hex(PPS_HIGH);
        let rec = avcc_decoder_config(&sps, &pps);
        let mut want = vec![1, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0, sps.len() as u8];
        want.extend_from_slice(&sps);
        want.extend_from_slice(&[1, 0, pps.len() as u8]);
        want.extend_from_slice(&pps);
        want.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]);
        assert_eq!(rec, want);

        let rec = avcc_decoder_config(&hex(SPS_HIGH10), &pps);
        assert_eq!(rec[rec.len() - 4..], [0xfd, 0xfa, 0xfa, 0]);
        let rec = avcc_decoder_config(&hex(SPS_HIGH444), &pps);
        assert_eq!(rec[rec.len() - 4..], [0xff, 0xf8, 0xf8, 0]);

        // Non-High profiles end with the PPS.
        let rec = avcc_decoder_config(&hex(SPS_MAIN), &pps);
        assert!(rec.ends_with(&pps));
        assert_eq!(rec[1..4], [0x4d, 0x40, 0x0d]);

        // A High SPS cut short after the level still gets the 4:2:0 8-bit default.
        let rec = avcc_decoder_config(&[0x67, 100, 0, 0x1f], &pps);
        assert_eq!(rec[rec.len() - 4..], [0xfd, 0xf8, 0xf8, 0]);
    }

    #[test]
    fn aac_codec_strings() {
        assert_eq!(aac_codec_string(&[0x11, 0x90]).unwrap(), "mp4a.40.2"); // AAC-LC 48 kHz stereo
        assert_eq!(
            aac_codec_string(&[0x2b, 0x92, 0x08, 0x00]).unwrap(),
            "mp4a.40.5"
        ); // HE-AAC
        assert_eq!(aac_codec_string(&[0x12]).unwrap(), "mp4a.40.2");
        // Escape: 11111 + 000010 → 32 + 2 = 34 (Layer-3 style extension).
        assert_eq!(aac_codec_string(&[0xf8, 0x40]).unwrap(), "mp4a.40.34");
        assert_eq!(aac_codec_string(&[0xff, 0xe0]).unwrap(), "mp4a.40.95");
        assert_eq!(
            aac_codec_string(&[0xf8]),
            Err(CodecError::Truncated {
                what: "AudioSpecificConfig"
            })
        );
        assert_eq!(
            aac_codec_string(&[]),
            Err(CodecError::Truncated {
                what: "AudioSpecificConfig"
            })
        );
        assert_eq!(
            aac_codec_string(&[0x00, 0x00]),
            Err(CodecError::NullAudioObjectType)
        );
    }
}
