//! Cross-origin tus: an application on another origin uploads with tus-js-client. The
//! origin's policy (`cors_origins`) decides which origins may; this module answers their
//! preflights for the tus methods and headers, and names the tus response headers a browser
//! script may read (tus-js-client needs `Location` and `Upload-Offset`).
//!
//! The bearer token travels in `Authorization`, which is listed explicitly: a wildcard in
//! `Access-Control-Allow-Headers` would not cover it.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use super::Uploads;

/// Methods of the tus endpoints.
pub const ALLOW_METHODS: &str = "POST, HEAD, PATCH, DELETE, OPTIONS";
/// Request headers tus clients send.
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Tus-Resumable, Upload-Length, \
     Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat, \
     X-HTTP-Method-Override, X-Requested-With, X-Request-Id";
/// Response headers of tus a cross-origin script may read.
pub const EXPOSE_HEADERS: &str = "Location, Upload-Offset, Upload-Length, Upload-Metadata, \
     Upload-Expires, Upload-Defer-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, \
     Tus-Extension, Tus-Checksum-Algorithm";

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`), or `None` for a plain tus `OPTIONS` (discovery). An origin
/// or a method that is not allowed gets the plain 204 without `Access-Control-Allow-*`: the
/// browser then refuses the request.
pub fn preflight(req: &HttpRequest, up: &Uploads) -> Option<HttpResponse> {
    let h = req.headers();
    let method = h.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let origin = h.get(header::ORIGIN)?;
    let mut b = HttpResponse::NoContent();
    b.insert_header((header::ALLOW, ALLOW_METHODS))
        .insert_header((
            header::VARY,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ));
    let method_ok = method
        .to_str()
        .is_ok_and(|m| ALLOW_METHODS.split(", ").any(|a| a == m));
    if let (Some(allow), true) = (up.cors.allowed(Some(origin)), method_ok) {
        b.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
    }
    Some(b.finish())
}

/// The `Access-Control-Expose-Headers` value every tus response carries (the origin adds its
/// own list and `Access-Control-Allow-Origin` for allowed origins).
pub fn expose() -> (header::HeaderName, HeaderValue) {
    (
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    )
}
