//! `Upload-Metadata` (tus 1.0 creation): comma-separated `key base64value` pairs (the value may
//! be absent). abr reads `name` (the package name, required) and `filename` (kept).

use std::collections::BTreeMap;

use base64::Engine;

/// Longest `Upload-Metadata` header accepted, bytes.
pub const MAX_METADATA: usize = 4096;
/// Longest package name.
pub const MAX_NAME: usize = 128;

/// The metadata of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Package name (validated with [`valid_name`]).
    pub name: String,
    /// The client's file name, if given (UTF-8).
    pub filename: Option<String>,
}

/// Decoded pairs, by key; a key without a value maps to an empty value.
pub fn parse_pairs(header: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
    if header.len() > MAX_METADATA {
        return Err(format!(
            "Upload-Metadata is longer than {MAX_METADATA} bytes"
        ));
    }
    let mut out = BTreeMap::new();
    if header.trim().is_empty() {
        return Ok(out);
    }
    for pair in header.split(',') {
        let pair = pair.trim_matches(' ');
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, Some(v)),
            None => (pair, None),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            return Err("Upload-Metadata: a key must be non-empty printable ASCII".into());
        }
        let value = match value {
            None => Vec::new(),
            Some(v) => {
                if v.contains(' ') {
                    return Err(format!("Upload-Metadata: the value of '{key}' has a space"));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map_err(|_| format!("Upload-Metadata: the value of '{key}' is not base64"))?
            }
        };
        if out.insert(key.to_string(), value).is_some() {
            return Err(format!("Upload-Metadata: key '{key}' appears twice"));
        }
    }
    Ok(out)
}

/// Parses the header into abr's metadata: `name` must be present and valid.
pub fn parse(header: Option<&str>) -> Result<Metadata, String> {
    let mut pairs = parse_pairs(header.unwrap_or_default())?;
    let text = |key: &str, v: Vec<u8>| {
        String::from_utf8(v).map_err(|_| format!("Upload-Metadata: '{key}' is not UTF-8"))
    };
    let name = match pairs.remove("name") {
        Some(v) => text("name", v)?,
        None => return Err("Upload-Metadata must carry 'name' (the package name)".into()),
    };
    valid_name(&name).map_err(|why| format!("package name '{}': {why}", name.escape_debug()))?;
    let filename = pairs
        .remove("filename")
        .map(|v| text("filename", v))
        .transpose()?;
    Ok(Metadata { name, filename })
}

/// The origin's rule for one path segment: 1–128 characters of `[A-Za-z0-9._-]`, not starting
/// with a dot (so not `.`, `..` or hidden), no `/`.
pub fn valid_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Err("must be 1-128 characters");
    }
    if s.starts_with('.') {
        return Err("must not start with '.'");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may only contain A-Z, a-z, 0-9, '.', '_' and '-' (one path segment)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn pairs_parse_as_tus_sends_them() {
        let h = format!(
            "name {},filename {}, is_confidential",
            b64("cat"),
            b64("cät.mp4")
        );
        let p = parse_pairs(&h).unwrap();
        assert_eq!(p["name"], b"cat");
        assert_eq!(p["filename"], "cät.mp4".as_bytes());
        assert_eq!(p["is_confidential"], b"");
        assert!(parse_pairs("").unwrap().is_empty());
        assert!(parse_pairs("  ").unwrap().is_empty());
        let m = parse(Some(&h)).unwrap();
        assert_eq!(m.name, "cat");
        assert_eq!(m.filename.as_deref(), Some("cät.mp4"));
        assert_eq!(
            parse(Some(&format!("name {}", b64("a.b-c_9"))))
                .unwrap()
                .filename,
            None
        );
    }

    #[test]
    fn malformed_metadata_is_refused_with_one_line() {
        let n = b64("ok");
        for bad in [
            format!("name {n},"),
            format!(",name {n}"),
            format!("name {n},,x"),
            format!("name {n},name {n}"),
            "name !!!".to_string(),
            "name a b".to_string(),
            "name YQ".to_string(), // unpadded
            format!("na\u{e9}me {n}"),
            format!("name {n},x {}", "A".repeat(MAX_METADATA)),
        ] {
            let e = parse_pairs(&bad);
            assert!(e.is_err(), "{bad:?}");
            assert!(!e.unwrap_err().contains('\n'));
        }
    }

    #[test]
    fn names_follow_the_origin_segment_rule() {
        for good in ["a", "Cat-01", "a.b", "x_y", &"n".repeat(MAX_NAME)] {
            assert!(valid_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "/a",
            "a\\b",
            "a b",
            "ä",
            "a\0",
            "a%2fb",
            &"n".repeat(MAX_NAME + 1),
        ] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
        assert!(parse(None).is_err());
        assert!(parse(Some(&format!("filename {}", b64("x")))).is_err());
        for bad in ["a/b", "..", ".hidden", ""] {
            let e = parse(Some(&format!("name {}", b64(bad)))).unwrap_err();
            assert!(e.contains("package name"), "{e}");
        }
        let e = parse(Some(&format!("name {}", b64_bytes(&[0xff])))).unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
    }

    fn b64_bytes(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// Random headers never panic, and what parses re-encodes to an equivalent header.
    #[test]
    fn random_headers_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"name filename,aZ09+/= \t.\xc3\xa9";
        for _ in 0..20_000 {
            let len = rng.random_range(0..40);
            let raw: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let s = String::from_utf8_lossy(&raw);
            if let Ok(p) = parse_pairs(&s) {
                let again: Vec<String> = p
                    .iter()
                    .map(|(k, v)| format!("{k} {}", b64_bytes(v)))
                    .collect();
                assert_eq!(parse_pairs(&again.join(",")).unwrap(), p, "{s:?}");
            }
            let _ = parse(Some(&s));
        }
    }
}
