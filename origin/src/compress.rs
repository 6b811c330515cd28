//! Manifest compression: gzip or brotli by Accept-Encoding, computed once per file version and
//! cached. Never applied to segments or to 206 responses.

use std::io::Write;

use bytes::Bytes;

/// A content coding the origin produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// brotli.
    Br,
    /// gzip.
    Gzip,
}

impl Coding {
    /// `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The preferred coding the client accepts (q > 0), brotli first; None for identity.
pub fn negotiate(accept_encoding: Option<&str>) -> Option<Coding> {
    let ae = accept_encoding?;
    let mut best: Option<(Coding, f32)> = None;
    for item in ae.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|v| v.trim().parse::<f32>().ok())
            })
            .unwrap_or(1.0);
        let coding = match name.as_str() {
            "br" => Coding::Br,
            "gzip" | "x-gzip" => Coding::Gzip,
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((c, bq)) => q > bq || (q == bq && coding == Coding::Br && c != Coding::Br),
        };
        if better {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// Compresses `data`.
pub fn compress(data: &[u8], coding: Coding) -> std::io::Result<Bytes> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(data)?;
            Ok(Bytes::from(e.finish()?))
        }
        Coding::Br => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 6, 22);
                w.write_all(data)?;
            }
            Ok(Bytes::from(out))
        }
    }
}

/// The ETag of a compressed variant: distinct from the identity ETag (a strong validator names
/// exact bytes).
pub fn variant_etag(etag: &str, coding: Coding) -> String {
    match etag.strip_suffix('"') {
        Some(s) => format!("{s}-{}\"", coding.token()),
        None => format!("{etag}-{}", coding.token()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None), None);
        assert_eq!(negotiate(Some("gzip, deflate, br")), Some(Coding::Br));
        assert_eq!(negotiate(Some("gzip")), Some(Coding::Gzip));
        assert_eq!(negotiate(Some("br;q=0, gzip;q=0.5")), Some(Coding::Gzip));
        assert_eq!(negotiate(Some("identity")), None);
        assert_eq!(negotiate(Some("gzip;q=0.9, br;q=0.1")), Some(Coding::Gzip));
        assert_eq!(variant_etag("\"1-a\"", Coding::Br), "\"1-a-br\"");
    }

    #[test]
    fn round_trip_gzip() {
        use std::io::Read;
        let data = b"#EXTM3U\n".repeat(100);
        let z = compress(&data, Coding::Gzip).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let b = compress(&data, Coding::Br).unwrap();
        let mut out = Vec::new();
        brotli::Decompressor::new(&b[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}
