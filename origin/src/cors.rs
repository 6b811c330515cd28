//! CORS response headers that a shared cache may store and replay to any client.
//!
//! An edge cache keeps the first response it fetched for a URL and serves it to every later
//! client, so a response must not depend on request headers unless it names them in `Vary`:
//!
//! - `cors_origins = ["*"]`: `Access-Control-Allow-Origin: *` and the expose list on every
//!   response, whether the request carried an `Origin` or not (no `Vary: Origin` needed).
//! - a list of origins: the matching origin is echoed, and every response carries
//!   `Vary: Origin`, with or without a match and with or without an `Origin` header, so a
//!   cache keeps one variant per origin.
//!
//! Preflights (`OPTIONS`) are answered by the routes with their own `Vary`. `Vary` is always
//! one header line, merged with what the handler set (`Accept-Encoding` on manifests): nginx
//! before 1.23 keys its cache variants on the last `Vary` line only.

use actix_web::http::header::{self, HeaderMap, HeaderValue};

/// Headers a browser may read cross-origin.
pub const EXPOSE_HEADERS: &str =
    "Content-Range, Content-Length, Content-Encoding, ETag, Accept-Ranges, Last-Modified, X-Request-Id";

/// The CORS policy of `cors_origins`.
#[derive(Debug, Clone)]
pub struct Cors {
    /// `["*"]`: any origin, and the same headers on every response.
    any: bool,
    /// The allowed origins (exact, byte for byte) when not `any`.
    origins: Vec<HeaderValue>,
}

impl Cors {
    /// The policy of the configured origin list (`"*"` anywhere in it allows any origin).
    pub fn new(list: &[String]) -> Self {
        Cors {
            any: list.iter().any(|o| o == "*"),
            origins: list
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allowed(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin?;
        self.origins
            .iter()
            .any(|a| a.as_bytes() == o.as_bytes())
            .then(|| o.clone())
    }

    /// Adds the CORS headers of a (non-preflight) response to a request whose `Origin` header
    /// is `origin`.
    pub fn apply(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if !self.any {
            add_vary(headers, "Origin");
        }
        if let Some(allow) = self.allowed(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
            // A handler's own list (the tus headers of uploads) comes first, then ours.
            let own = headers
                .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .and_then(|v| HeaderValue::from_str(&format!("{v}, {EXPOSE_HEADERS}")).ok());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                own.unwrap_or(HeaderValue::from_static(EXPOSE_HEADERS)),
            );
        }
    }
}

/// Adds `name` to the response's `Vary`, keeping one header line (existing lines are merged,
/// a name already listed, or `*`, is left as it is).
pub fn add_vary(headers: &mut HeaderMap, name: &'static str) {
    let mut names: Vec<&str> = headers
        .get_all(header::VARY)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let listed = names
        .iter()
        .any(|n| *n == "*" || n.eq_ignore_ascii_case(name));
    if listed && headers.get_all(header::VARY).count() <= 1 {
        return;
    }
    if !listed {
        names.push(name);
    }
    let joined = names.join(", ");
    let value = HeaderValue::from_str(&joined).unwrap_or(HeaderValue::from_static(name));
    headers.insert(header::VARY, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vary(h: &HeaderMap) -> Vec<String> {
        h.get_all(header::VARY)
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn acao(h: &HeaderMap) -> Option<&str> {
        h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap())
    }

    fn applied(cors: &Cors, origin: Option<&str>, before: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in before {
            h.append(header::VARY, HeaderValue::from_static(v));
        }
        let o = origin.map(|o| HeaderValue::from_str(o).unwrap());
        cors.apply(o.as_ref(), &mut h);
        h
    }

    /// `*`: the same CORS headers for every request, none varying on Origin.
    #[test]
    fn any_origin_headers_do_not_depend_on_the_request() {
        let cors = Cors::new(&["*".into()]);
        for origin in [None, Some("http://a.example"), Some("null")] {
            let h = applied(&cors, origin, &[]);
            assert_eq!(acao(&h), Some("*"), "{origin:?}");
            assert_eq!(
                h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).unwrap(),
                EXPOSE_HEADERS
            );
            assert!(vary(&h).is_empty(), "{origin:?}: {:?}", vary(&h));
            // A manifest's Vary stays as the handler set it.
            let h = applied(&cors, origin, &["Accept-Encoding"]);
            assert_eq!(vary(&h), ["Accept-Encoding"]);
        }
        // A handler's own expose list is kept, ours appended.
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location, Upload-Offset"),
        );
        cors.apply(None, &mut h);
        assert_eq!(
            h.get(header::ACCESS_CONTROL_EXPOSE_HEADERS).unwrap(),
            format!("Location, Upload-Offset, {EXPOSE_HEADERS}").as_str()
        );
        // "*" anywhere in the list wins.
        let cors = Cors::new(&["http://a.example".into(), "*".into()]);
        assert_eq!(acao(&applied(&cors, None, &[])), Some("*"));
    }

    /// A list and a listed origin: echoed, with Vary: Origin.
    #[test]
    fn listed_origin_is_echoed_with_vary() {
        let cors = Cors::new(&["http://a.example".into(), "https://b.example:8443".into()]);
        for origin in ["http://a.example", "https://b.example:8443"] {
            let h = applied(&cors, Some(origin), &[]);
            assert_eq!(acao(&h), Some(origin));
            assert!(h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
            assert_eq!(vary(&h), ["Origin"]);
            // Merged into the handler's Vary: one line.
            let h = applied(&cors, Some(origin), &["Accept-Encoding"]);
            assert_eq!(vary(&h), ["Accept-Encoding, Origin"]);
        }
    }

    /// A list and no match (another origin, a look-alike, no Origin at all): no CORS headers,
    /// and still Vary: Origin, so a cache does not hand this response to a listed origin.
    #[test]
    fn unlisted_or_missing_origin_gets_vary_only() {
        let cors = Cors::new(&["http://a.example".into()]);
        for origin in [
            None,
            Some("http://b.example"),
            Some("http://a.example.evil"),
            Some("https://a.example"),
            Some("HTTP://A.EXAMPLE"),
            Some("null"),
        ] {
            let h = applied(&cors, origin, &[]);
            assert_eq!(acao(&h), None, "{origin:?}");
            assert!(!h.contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
            assert_eq!(vary(&h), ["Origin"], "{origin:?}");
            let h = applied(&cors, origin, &["Accept-Encoding"]);
            assert_eq!(vary(&h), ["Accept-Encoding, Origin"], "{origin:?}");
        }
    }

    /// Vary merging: several lines become one, names are not repeated, `*` stays alone.
    #[test]
    fn vary_is_one_merged_line() {
        let merged = |before: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in before {
                h.append(header::VARY, HeaderValue::from_static(v));
            }
            add_vary(&mut h, "Origin");
            vary(&h)
        };
        assert_eq!(merged(&[]), ["Origin"]);
        assert_eq!(merged(&["origin"]), ["origin"]);
        assert_eq!(merged(&["*"]), ["*"]);
        assert_eq!(
            merged(&["Accept-Encoding", "Access-Control-Request-Method"]),
            ["Accept-Encoding, Access-Control-Request-Method, Origin"]
        );
        assert_eq!(
            merged(&["Accept-Encoding, Origin"]),
            ["Accept-Encoding, Origin"]
        );
    }
}
