//! Upload tokens: `Authorization: Bearer TOKEN`, checked against the SHA-256 of each configured
//! token in constant time. A token is configured as `PRINCIPAL:SHA256HEX[:MAX_SIZE[:QUOTA]]`
//! (make the hash with `printf %s TOKEN | sha256sum`); only its hash is ever kept.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::metadata::valid_name;

/// One configured token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Who uploads with it (a path segment: packages go to `ROOT/<principal>/<name>`).
    pub principal: String,
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// Largest upload of this principal (bytes), if lower than the global one.
    pub max_size: Option<u64>,
    /// Sum of the lengths of this principal's uploads on disk (bytes), if limited.
    pub quota: Option<u64>,
}

/// The principal a request was authenticated as, with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its name.
    pub name: String,
    /// Its largest upload.
    pub max_size: Option<u64>,
    /// Its quota.
    pub quota: Option<u64>,
}

impl Token {
    /// Parses `PRINCIPAL:SHA256HEX[:MAX_SIZE[:QUOTA]]` (an empty limit means none); the error
    /// is one line naming what is wrong, never the hash.
    pub fn parse(s: &str) -> Result<Token, String> {
        let mut parts = s.split(':');
        let principal = parts.next().unwrap_or_default();
        if let Err(why) = valid_name(principal) {
            return Err(format!("upload token principal '{principal}': {why}"));
        }
        let hex = parts.next().unwrap_or_default();
        let hash = parse_hex32(hex).ok_or_else(|| {
            format!("upload token of '{principal}': the second field must be the token's SHA-256 as 64 hex digits")
        })?;
        let limit = |what: &str, v: Option<&str>| -> Result<Option<u64>, String> {
            match v {
                None | Some("") => Ok(None),
                Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                    format!("upload token of '{principal}': {what} '{v}' is not a number of bytes")
                }),
            }
        };
        let max_size = limit("MAX_SIZE", parts.next())?;
        let quota = limit("QUOTA", parts.next())?;
        if parts.next().is_some() {
            return Err(format!(
                "upload token of '{principal}': expected PRINCIPAL:SHA256HEX[:MAX_SIZE[:QUOTA]]"
            ));
        }
        Ok(Token {
            principal: principal.to_string(),
            hash,
            max_size,
            quota,
        })
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The configured tokens.
#[derive(Debug, Default)]
pub struct Tokens(Vec<Token>);

impl Tokens {
    /// Parses every configured token.
    pub fn parse(list: &[String]) -> Result<Tokens, String> {
        list.iter()
            .map(|t| Token::parse(t))
            .collect::<Result<_, _>>()
            .map(Tokens)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no token is configured (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The principal of an `Authorization` header value, if it is `Bearer <a configured
    /// token>`. Every configured hash is compared, in constant time.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Option<Principal> {
        let value = authorization?;
        let scheme = value.get(..7)?;
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return None;
        }
        let token = value.get(7..)?.trim_ascii();
        if token.is_empty() {
            return None;
        }
        let hash: [u8; 32] = Sha256::digest(token).into();
        let mut found: Option<&Token> = None;
        for t in &self.0 {
            if bool::from(t.hash.ct_eq(&hash)) && found.is_none() {
                found = Some(t);
            }
        }
        found.map(|t| Principal {
            name: t.principal.clone(),
            max_size: t.max_size,
            quota: t.quota,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"

    #[test]
    fn tokens_parse_with_optional_limits() {
        let t = Token::parse(&format!("alice:{H}")).unwrap();
        assert_eq!(
            (t.principal.as_str(), t.max_size, t.quota),
            ("alice", None, None)
        );
        assert_eq!(t.hash[0], 0x9f);
        let t = Token::parse(&format!("bob:{}:100:1000", H.to_uppercase())).unwrap();
        assert_eq!((t.max_size, t.quota), (Some(100), Some(1000)));
        let t = Token::parse(&format!("bob:{H}::1000")).unwrap();
        assert_eq!((t.max_size, t.quota), (None, Some(1000)));
        for bad in [
            String::new(),
            "alice".into(),
            format!(":{H}"),
            format!("a/b:{H}"),
            format!("..:{H}"),
            format!(".x:{H}"),
            format!("alice:{}", &H[1..]),
            format!("alice:{}zz", &H[2..]),
            format!("alice:{H}:ten"),
            format!("alice:{H}:1:-5"),
            format!("alice:{H}:1:2:3"),
        ] {
            let e = Token::parse(&bad);
            assert!(e.is_err(), "{bad}");
            assert!(!e.unwrap_err().contains(H), "the hash is not echoed");
        }
    }

    #[test]
    fn bearer_tokens_authenticate_by_hash() {
        let tokens =
            Tokens::parse(&[format!("alice:{H}:5"), format!("bob:{}", "00".repeat(32))]).unwrap();
        let p = tokens.authenticate(Some(b"Bearer test")).unwrap();
        assert_eq!((p.name.as_str(), p.max_size), ("alice", Some(5)));
        assert_eq!(
            tokens.authenticate(Some(b"bearer  test ")).unwrap().name,
            "alice"
        );
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer tes",
            b"Basic dGVzdA==",
            b"test",
            b"Bearer \xff\xfe",
        ] {
            assert_eq!(tokens.authenticate(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(tokens.authenticate(None), None);
    }
}
