//! The library page at `/` (with `ingest`): the principal's videos with their state and live
//! progress, an upload form (tus-js-client, resumable across reloads), play, cancel, retry and
//! delete — plain HTML, CSS and JavaScript embedded in the binary, no build step. The page
//! talks only to `/api/v1/uploads` and `/api/v1/videos` with the token the user enters.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// Where the page's scripts and styles are served.
pub const ASSETS: &str = "/_library/";
/// The vendored tus-js-client browser bundle (its path names its version: cached for good).
pub const TUS_JS: &str = "tus-js-client-4.3.1.min.js";

const HTML: &str = include_str!("../assets/library.html");
const JS: &str = include_str!("../assets/library.js");
const CSS: &str = include_str!("../assets/library.css");
const ICON: &str = include_str!("../assets/icon.svg");
/// `tus-js-client@4.3.1` `dist/tus.min.js`, byte for byte (see `assets/vendor/README.md`).
pub const TUS_MIN_JS: &[u8] = include_bytes!("../assets/vendor/tus.min.js");

/// Scripts and styles only from this origin, requests only to it, nothing inline.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; media-src 'self'; form-action 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// One embedded file: its body, type and strong ETag.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        let digest = Sha256::digest(body);
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            body,
            content_type,
            etag: format!("\"{hex}\""),
        }
    }

    /// 200 with the body, or 304 when `If-None-Match` names it; `cache` as Cache-Control.
    fn response(&self, req: &HttpRequest, cache: &'static str) -> HttpResponse {
        let matches = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == self.etag || t.trim() == "*")
            });
        let mut b = if matches {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        b.insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ETAG, self.etag.as_str()))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if matches {
            return b.finish();
        }
        b.content_type(self.content_type).body(self.body)
    }
}

static PAGE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(HTML.as_bytes(), "text/html; charset=utf-8"));
static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(JS.as_bytes(), "application/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(CSS.as_bytes(), "text/css; charset=utf-8"));
static FAVICON: LazyLock<Asset> = LazyLock::new(|| Asset::new(ICON.as_bytes(), "image/svg+xml"));
static TUS: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(TUS_MIN_JS, "application/javascript; charset=utf-8"));

/// Registers `GET /` and the page's assets under [`ASSETS`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page))
        .service(web::scope("/_library").route("/{file}", web::get().to(asset)));
}

async fn page(req: HttpRequest) -> HttpResponse {
    let mut res = PAGE.response(&req, "no-cache");
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn asset(req: HttpRequest) -> HttpResponse {
    match req.match_info().get("file") {
        Some("library.js") => SCRIPT.response(&req, "no-cache"),
        Some("library.css") => STYLE.response(&req, "no-cache"),
        Some("icon.svg") => FAVICON.response(&req, "public, max-age=86400"),
        Some(TUS_JS) => TUS.response(&req, "public, max-age=31536000, immutable"),
        _ => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;

    #[actix_web::test]
    async fn the_page_and_its_assets_are_served_with_their_headers() {
        let app = init_service(App::new().configure(configure)).await;
        let res = call_service(&app, TestRequest::get().uri("/").to_request()).await;
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-cache");
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let etag = h.get(header::ETAG).unwrap().clone();
        let body = read_body(res).await;
        let html = std::str::from_utf8(&body).unwrap();
        assert!(
            html.contains(&format!("{ASSETS}{TUS_JS}")),
            "the page loads tus-js-client"
        );
        assert!(!html.contains("<script>"), "no inline script");

        // Revalidation answers 304 without a body.
        let req = TestRequest::get()
            .uri("/")
            .insert_header((header::IF_NONE_MATCH, etag))
            .to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

        let req = TestRequest::get()
            .uri(&format!("{ASSETS}{TUS_JS}"))
            .to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers().get(header::CACHE_CONTROL).unwrap(),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(read_body(res).await.as_ref(), TUS_MIN_JS);

        for (file, ty) in [
            ("library.js", "application/javascript"),
            ("library.css", "text/css"),
        ] {
            let req = TestRequest::get()
                .uri(&format!("{ASSETS}{file}"))
                .to_request();
            let res = call_service(&app, req).await;
            assert_eq!(res.status(), StatusCode::OK, "{file}");
            let ct = res
                .headers()
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap();
            assert!(ct.starts_with(ty), "{file}: {ct}");
        }
        let req = TestRequest::get()
            .uri(&format!("{ASSETS}nope.js"))
            .to_request();
        let res = call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    /// The vendored bundle is the one npm installs for the tus tests (scripts/setup.sh).
    #[test]
    fn the_vendored_tus_js_client_is_the_npm_file() {
        let npm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/tus/node_modules/tus-js-client/dist/tus.min.js");
        let bytes = std::fs::read(&npm).unwrap_or_else(|e| {
            panic!("{}: {e} (run scripts/setup.sh)", npm.display());
        });
        assert!(
            bytes == TUS_MIN_JS,
            "service/assets/vendor/tus.min.js differs from {}",
            npm.display()
        );
    }
}
