//! Signed URLs: an HMAC-SHA256 token with an expiry, scoped to one package, carried in the path
//! (`/_t/<expiry>/<signature>/<package>/…`) so that the relative URLs inside manifests inherit
//! it — one token covers a package's manifests and segments, as CDN token auth does. A package
//! may be nested (`alice/holiday`, as the video service publishes them): the token is checked
//! against each directory prefix of the path up to [`MAX_SCOPE_DEPTH`] segments, so a token for
//! `alice/holiday` opens that package only, and one for `alice` every package under it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Path prefix of signed URLs.
pub const PREFIX: &str = "_t";
/// Most path segments a signed package scope has.
pub const MAX_SCOPE_DEPTH: usize = 4;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, wrong key or wrong package.
    Invalid,
    /// Past its expiry.
    Expired,
}

fn mac(key: &[u8], expiry: u64, package: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(format!("{expiry}:/{package}/").as_bytes());
    m
}

/// The signature for `package` until `expiry` (Unix seconds).
pub fn sign(key: &[u8], expiry: u64, package: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, expiry, package).finalize().into_bytes())
}

/// The signed path prefix `/_t/<expiry>/<sig>/<package>/`.
pub fn signed_prefix(key: &[u8], expiry: u64, package: &str) -> String {
    format!(
        "/{PREFIX}/{expiry}/{}/{package}/",
        sign(key, expiry, package)
    )
}

/// Verifies a token (constant-time comparison); returns the seconds it remains valid (≥ 1).
pub fn verify(
    key: &[u8],
    expiry: &str,
    sig: &str,
    package: &str,
    now: SystemTime,
) -> Result<u64, TokenError> {
    let expiry: u64 = expiry.parse().map_err(|_| TokenError::Invalid)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::Invalid)?;
    mac(key, expiry, package)
        .verify_slice(&sig)
        .map_err(|_| TokenError::Invalid)?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now >= expiry {
        return Err(TokenError::Expired);
    }
    Ok(expiry - now)
}

/// [`verify`] for the path after the token, `rest` (`["alice", "holiday", "hls", "x.m3u8"]`):
/// valid when the token signs one of its directory prefixes (at most [`MAX_SCOPE_DEPTH`]
/// segments, never the whole path). Every prefix is checked, in constant time each.
pub fn verify_path(
    key: &[u8],
    expiry: &str,
    sig: &str,
    rest: &[&str],
    now: SystemTime,
) -> Result<u64, TokenError> {
    let depth = rest.len().saturating_sub(1).min(MAX_SCOPE_DEPTH);
    let mut found = Err(TokenError::Invalid);
    for k in 1..=depth {
        match verify(key, expiry, sig, &rest[..k].join("/"), now) {
            Ok(left) => return Ok(left),
            Err(TokenError::Expired) => found = Err(TokenError::Expired),
            Err(TokenError::Invalid) => {}
        }
    }
    found
}

/// Key bytes from configuration: `hex:…` is decoded, anything else is used as text.
pub fn key_bytes(s: &str) -> Vec<u8> {
    if let Some(h) = s.strip_prefix("hex:") {
        let b = h.as_bytes();
        if b.len() % 2 == 0 {
            let decoded: Option<Vec<u8>> = b
                .chunks(2)
                .map(|c| {
                    std::str::from_utf8(c)
                        .ok()
                        .and_then(|s| u8::from_str_radix(s, 16).ok())
                })
                .collect();
            if let Some(d) = decoded {
                return d;
            }
        }
    }
    s.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tokens() {
        let key = b"secret";
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let sig = sign(key, 2_000, "movie");
        assert_eq!(verify(key, "2000", &sig, "movie", now), Ok(1_000));
        assert_eq!(
            verify(key, "2000", &sig, "other", now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify(b"wrong", "2000", &sig, "movie", now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify(key, "2001", &sig, "movie", now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify(key, "x", &sig, "movie", now),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verify(key, "2000", "!!", "movie", now),
            Err(TokenError::Invalid)
        );
        let old = sign(key, 500, "movie");
        assert_eq!(
            verify(key, "500", &old, "movie", now),
            Err(TokenError::Expired)
        );
        assert_eq!(
            signed_prefix(key, 2_000, "movie"),
            format!("/_t/2000/{sig}/movie/")
        );
        // Nested scopes: a token for alice/holiday opens that package only; one for alice
        // every package under it; never the file itself as a scope.
        let nested = sign(key, 2_000, "alice/holiday");
        let path = |p: &str| p.split('/').map(str::to_string).collect::<Vec<_>>();
        let ok = |sig: &str, p: &str| {
            let segs = path(p);
            let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
            verify_path(key, "2000", sig, &refs, now)
        };
        assert_eq!(ok(&nested, "alice/holiday/hls/master.m3u8"), Ok(1_000));
        assert_eq!(
            ok(&nested, "alice/other/hls/master.m3u8"),
            Err(TokenError::Invalid)
        );
        assert_eq!(ok(&nested, "alice/holiday"), Err(TokenError::Invalid));
        let all = sign(key, 2_000, "alice");
        assert_eq!(ok(&all, "alice/other/hls/master.m3u8"), Ok(1_000));
        assert_eq!(ok(&sig, "movie/hls/master.m3u8"), Ok(1_000));
        let old = sign(key, 500, "alice/holiday");
        let segs = path("alice/holiday/a.ts");
        let refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        assert_eq!(
            verify_path(key, "500", &old, &refs, now),
            Err(TokenError::Expired)
        );
        assert_eq!(key_bytes("hex:00ff"), vec![0, 255]);
        assert_eq!(key_bytes("plain"), b"plain".to_vec());
    }
}
