//! tus `checksum` extension: `Upload-Checksum: <algorithm> <base64 digest>` of one PATCH's
//! body; the chunk is kept only if it matches (else 460 and the offset does not move).

use base64::Engine;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The algorithms offered (`Tus-Checksum-Algorithm`).
pub const ALGORITHMS: &str = "sha1,sha256";

/// Why an `Upload-Checksum` header is refused (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// Not `<algorithm> <base64>`.
    #[error("Upload-Checksum must be '<algorithm> <base64 digest>'")]
    Malformed,
    /// An algorithm abr does not offer.
    #[error("Upload-Checksum algorithm '{0}' is not supported (supported: sha1, sha256)")]
    Unsupported(String),
    /// The digest is not base64 of the algorithm's size.
    #[error("Upload-Checksum digest is not base64 of a {0} digest")]
    BadDigest(&'static str),
}

/// The expected digest of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    algorithm: Algorithm,
    digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha1,
    Sha256,
}

impl Expected {
    /// Parses the header value.
    pub fn parse(value: &str) -> Result<Expected, ChecksumError> {
        let (alg, digest) = value
            .trim()
            .split_once(' ')
            .ok_or(ChecksumError::Malformed)?;
        let (algorithm, len, label) = match alg.to_ascii_lowercase().as_str() {
            "sha1" => (Algorithm::Sha1, 20, "sha1"),
            "sha256" => (Algorithm::Sha256, 32, "sha256"),
            _ if alg.is_empty() => return Err(ChecksumError::Malformed),
            _ => {
                return Err(ChecksumError::Unsupported(
                    alg.chars()
                        .take(32)
                        .collect::<String>()
                        .escape_debug()
                        .to_string(),
                ))
            }
        };
        let digest = base64::engine::general_purpose::STANDARD
            .decode(digest.trim())
            .map_err(|_| ChecksumError::BadDigest(label))?;
        if digest.len() != len {
            return Err(ChecksumError::BadDigest(label));
        }
        Ok(Expected { algorithm, digest })
    }

    /// A hasher for the chunk.
    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha1 => Hasher::Sha1(Sha1::new()),
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
        }
    }

    /// Whether `h` (fed the whole chunk) matches.
    pub fn matches(&self, h: Hasher) -> bool {
        let got = match h {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        got == self.digest
    }
}

/// A running digest of a chunk.
pub enum Hasher {
    /// SHA-1.
    Sha1(Sha1),
    /// SHA-256.
    Sha256(Sha256),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn checksums_parse_and_match() {
        let body = b"hello tus";
        for (alg, digest) in [
            ("sha1", Sha1::digest(body).to_vec()),
            ("sha256", Sha256::digest(body).to_vec()),
            ("SHA256", Sha256::digest(body).to_vec()),
        ] {
            let e = Expected::parse(&format!("{alg} {}", b64(&digest))).unwrap();
            let mut h = e.hasher();
            h.update(&body[..3]);
            h.update(&body[3..]);
            assert!(e.matches(h), "{alg}");
            let mut h = e.hasher();
            h.update(b"hello tuS");
            assert!(!e.matches(h), "{alg}");
        }
    }

    #[test]
    fn bad_headers_are_refused_by_kind() {
        let d = b64(&[0u8; 32]);
        assert_eq!(
            Expected::parse(&format!("md5 {d}")),
            Err(ChecksumError::Unsupported("md5".into()))
        );
        assert!(matches!(
            Expected::parse(&format!("crc32\u{0} {d}")),
            Err(ChecksumError::Unsupported(_))
        ));
        for bad in ["", "sha256", &format!(" {d}"), "sha256"] {
            assert_eq!(
                Expected::parse(bad),
                Err(ChecksumError::Malformed),
                "{bad:?}"
            );
        }
        for bad in [
            "sha256 !!!!".to_string(),
            format!("sha1 {d}"),
            format!("sha256 {}", b64(&[0u8; 31])),
            "sha256  x".to_string(),
        ] {
            assert!(
                matches!(Expected::parse(&bad), Err(ChecksumError::BadDigest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn random_headers_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let alphabet = b"sha1256 md5+/=AZaz09\xc3\xa9 ";
        for _ in 0..20_000 {
            let len = rng.random_range(0..60);
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let _ = Expected::parse(&String::from_utf8_lossy(&raw));
        }
    }
}
