//! Viewer sessions: a viewer id with an expiry, HMAC-SHA256-signed with the cluster's session
//! key, so any node validates any viewer without shared state. Token: `<viewer>.<expiry>.<sig>`
//! (viewer = 32 hex digits, expiry = Unix seconds, sig = base64url).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Cookie carrying the token.
pub const COOKIE: &str = "abr_session";

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Malformed or signed with another key.
    Invalid,
    /// Past its expiry.
    Expired,
}

/// Issues and verifies session tokens.
pub struct Sessions {
    key: Vec<u8>,
    ttl: Duration,
}

/// A newly issued session.
pub struct Issued {
    /// Viewer id.
    pub viewer: String,
    /// Token for the cookie or `Authorization: Bearer`.
    pub token: String,
    /// Expiry (Unix seconds).
    pub expires: u64,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sessions {
    /// Sessions signed with `key`, valid for `ttl`.
    pub fn new(key: Vec<u8>, ttl: Duration) -> Self {
        Sessions { key, ttl }
    }

    /// Session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, viewer: &str, expiry: u64) -> Hmac<Sha256> {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        m.update(format!("abr-session:{viewer}:{expiry}").as_bytes());
        m
    }

    /// A new viewer id and its token.
    pub fn issue(&self, now: SystemTime) -> Issued {
        let viewer = format!("{:032x}", rand::random::<u128>());
        let expires = unix(now) + self.ttl.as_secs();
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&viewer, expires).finalize().into_bytes());
        Issued {
            token: format!("{viewer}.{expires}.{sig}"),
            viewer,
            expires,
        }
    }

    /// The viewer id of a valid token (constant-time signature check).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<String, SessionError> {
        let mut parts = token.split('.');
        let (Some(viewer), Some(exp), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Invalid);
        };
        if viewer.len() != 32 || !viewer.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SessionError::Invalid);
        }
        let exp: u64 = exp.parse().map_err(|_| SessionError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| SessionError::Invalid)?;
        self.mac(viewer, exp)
            .verify_slice(&sig)
            .map_err(|_| SessionError::Invalid)?;
        if unix(now) >= exp {
            return Err(SessionError::Expired);
        }
        Ok(viewer.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_key_and_before_expiry() {
        let s = Sessions::new(b"k1".to_vec(), Duration::from_secs(60));
        let now = SystemTime::now();
        let i = s.issue(now);
        assert_eq!(s.verify(&i.token, now).unwrap(), i.viewer);
        // Any node with the same key accepts it; another key does not.
        let same = Sessions::new(b"k1".to_vec(), Duration::from_secs(5));
        assert_eq!(same.verify(&i.token, now).unwrap(), i.viewer);
        let other = Sessions::new(b"k2".to_vec(), Duration::from_secs(60));
        assert_eq!(other.verify(&i.token, now), Err(SessionError::Invalid));
        assert_eq!(
            s.verify(&i.token, now + Duration::from_secs(61)),
            Err(SessionError::Expired)
        );
        // Tampering with the viewer or the expiry breaks the signature.
        let mut parts: Vec<&str> = i.token.split('.').collect();
        let forged_exp = (i.expires + 1000).to_string();
        parts[1] = &forged_exp;
        assert_eq!(s.verify(&parts.join("."), now), Err(SessionError::Invalid));
        for bad in [
            "",
            "a.b.c",
            "x.y",
            &format!("{}.1.", "0".repeat(32)),
            "a.b.c.d",
        ] {
            assert_eq!(s.verify(bad, now), Err(SessionError::Invalid), "{bad}");
        }
    }
}
