//! Request handling: the package-file handler (Range, conditional requests, compression,
//! caching headers), health and readiness, the player page, operator endpoints, CORS preflight,
//! and the middleware that assigns request ids, resolves client addresses, hands package paths
//! straight to their handler (the router only sees the named routes), adds CORS headers, asks
//! clients to reconnect while draining, counts metrics and writes the JSON access log.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{ConnectionType, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder};
use bytes::Bytes;

use crate::body::{self, FileBody, Piece, Source};
use crate::compress::{self, Coding};
use crate::conditional::{self, Conditions, Decision, Validators};
use crate::files::{self, Refusal};
use crate::head_deadline::HeadClock;
use crate::range::{self, RangeOutcome};
use crate::sendfile::{SplicedBody, Splices};
use crate::state::State;
use crate::telemetry::RequestInfo;

/// Largest manifest compressed in memory (bigger ones are sent as they are).
const MAX_COMPRESS_BYTES: u64 = 16 << 20;

/// Headers a browser may send cross-origin (preflight `Access-Control-Allow-Headers`).
const CORS_ALLOW_HEADERS: &str = "Range, If-Range, If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since, X-Request-Id";

fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether `path` may be one of the named routes [`configure`] registers (exact paths and
/// scope prefixes) or a route of an extension (under one of `extension_prefixes`, or one of its
/// exact `extension_paths`). Every other
/// path goes to the package-file handler, which the middleware calls directly: on a request for
/// a segment, matching it against each named route first and boxing the call through the router
/// cost about 5 % of a small file's CPU.
fn named_route(path: &str, extension_prefixes: &[&str], extension_paths: &[&str]) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
        || extension_paths.contains(&path)
        || ["/debug/", "/play/", "/_player/"]
            .iter()
            .chain(extension_prefixes)
            .any(|p| path.starts_with(p))
}

/// Registers the origin's routes and the package-file fallback (keep [`named_route`] in step);
/// an extension's routes are registered before it (see [`crate::server::run`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::route().to(healthz))
        .route("/readyz", web::route().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/debug/pprof/profile", web::get().to(profile))
        // Scopes: a package path is told apart by a static prefix, not a pattern match.
        .service(web::scope("/play").route("/{name:.+}", web::get().to(play_page)))
        .service(web::scope("/_player").route("/{file}", web::get().to(player_asset)))
        .default_service(web::to(package_file_route));
}

async fn healthz() -> HttpResponse {
    text(StatusCode::OK, "ok\n")
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, "ready\n")
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    }
}

/// Whether an operator endpoint may answer `req`: only on the admin listener when one is
/// configured (extensions' operator endpoints use it too).
pub fn admin_allowed(req: &HttpRequest, state: &State) -> bool {
    match state.config.admin_listen {
        None => true,
        Some(admin) => {
            let local = match req.conn_data::<crate::server::LocalAddr>() {
                Some(a) => a.0,
                None => req.app_config().local_addr(),
            };
            local.port() == admin.port()
        }
    }
}

async fn metrics(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if !admin_allowed(&req, &state) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

#[derive(serde::Deserialize)]
struct ProfileQuery {
    seconds: Option<u64>,
}

/// CPU profile for `seconds` (1–60), returned as a flamegraph SVG.
async fn profile(
    req: HttpRequest,
    state: web::Data<State>,
    q: web::Query<ProfileQuery>,
) -> HttpResponse {
    if !admin_allowed(&req, &state) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let secs = q.seconds.unwrap_or(10).clamp(1, 60);
    let r = web::block(move || -> Result<Vec<u8>, String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(99)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_secs(secs));
        let report = guard.report().build().map_err(|e| e.to_string())?;
        let mut svg = Vec::new();
        report.flamegraph(&mut svg).map_err(|e| e.to_string())?;
        Ok(svg)
    })
    .await;
    match r {
        Ok(Ok(svg)) => HttpResponse::Ok().content_type("image/svg+xml").body(svg),
        Ok(Err(e)) => HttpResponse::InternalServerError().body(format!("profiler: {e}\n")),
        Err(e) => HttpResponse::InternalServerError().body(format!("profiler: {e}\n")),
    }
}

const PLAYER_PAGE: &str = include_str!("player.html");

/// `/play/<package>`: the player page of a package, which may be nested (`/play/alice/holiday`
/// for the package `ROOT/alice/holiday`, as the video service publishes them).
async fn play_page(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let raw = req.match_info().get("name").unwrap_or("");
    let name = match files::segments(&format!("/{raw}")) {
        Ok(segs) if !segs.is_empty() => segs.join("/"),
        // The package-file handler's answer to a bad path (400 for a traversal).
        _ => return package_file(&req, &state).await,
    };
    if !state.root.path().join(&name).is_dir() {
        // Not a package: a file of a package named `play` (`/play/hls/master.m3u8`), or 404.
        if name.contains('/') {
            return package_file(&req, &state).await;
        }
        return text(StatusCode::NOT_FOUND, "no such package\n");
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(player_page(&name))
}

/// The player page of package `name`: the name HTML-escaped in the text, a JSON string (with
/// `<` escaped, so it cannot end the script) in the script.
fn player_page(name: &str) -> String {
    let html = name
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    // A JS string literal: every character that could end it, the script or the line escaped.
    let mut js = String::with_capacity(name.len() + 2);
    js.push('"');
    for c in name.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '/' | '.' | '_' | '-' | ' ' => js.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    js.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    js.push('"');
    PLAYER_PAGE
        .replace("{{PACKAGE_JS}}", &js)
        .replace("{{PACKAGE}}", &html)
}

async fn player_asset(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let rel = match req.match_info().get("file") {
        Some("hls.min.js") => "hls.js/dist/hls.min.js",
        Some("dash.all.min.js") => "dashjs/dist/modern/umd/dash.all.min.js",
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let path = state.config.player_assets.join(rel);
    let Ok(Ok(e)) = web::block(move || files::open(&path)).await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "player scripts are not installed (npm ci in origin/player, or set player_assets)\n",
        );
    };
    let len = e.len;
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .insert_header((header::ETAG, e.etag.clone()))
        .body(FileBody::new(
            Source::File(e.file),
            vec![Piece::Range { offset: 0, len }],
            None,
        ))
}

fn header_str(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// CORS preflight.
fn preflight(req: &HttpRequest, state: &State) -> HttpResponse {
    let origin = req.headers().get(header::ORIGIN);
    let method_ok = matches!(
        header_str(req.headers(), header::ACCESS_CONTROL_REQUEST_METHOD),
        Some("GET") | Some("HEAD")
    );
    let mut b = HttpResponse::NoContent();
    b.insert_header((header::ALLOW, "GET, HEAD, OPTIONS"));
    if let (Some(o), true) = (origin.and(state.cors.allowed(origin)), method_ok) {
        b.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_ALLOW_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"));
    }
    b.insert_header((
        header::VARY,
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    ));
    b.finish()
}

/// [`package_file`] for paths under a named route's prefix that no named route matched.
async fn package_file_route(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    package_file(&req, &state).await
}

/// GET/HEAD of package files (and everything that is not another route).
async fn package_file(req: &HttpRequest, state: &State) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return preflight(req, state);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD, OPTIONS"))
            .finish();
    }
    let refused = |r| match r {
        Refusal::BadRequest => text(StatusCode::BAD_REQUEST, "bad request path\n"),
        Refusal::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let path = match files::decode(req.uri().path()) {
        Ok(p) => p,
        Err(r) => return refused(r),
    };
    let segs = match files::split(&path) {
        Ok(s) => s,
        Err(r) => return refused(r),
    };
    // A signed request also yields its token's remaining lifetime, which caps how long the
    // response may be cached.
    let (segs, token_left) = match (segs.first().copied(), &state.signing_key) {
        (Some(crate::auth::PREFIX), Some(key)) if segs.len() >= 5 => {
            match crate::auth::verify_path(key, segs[1], segs[2], &segs[3..], SystemTime::now()) {
                Ok(left) => (&segs[3..], Some(left)),
                Err(crate::auth::TokenError::Expired) => {
                    return text(StatusCode::FORBIDDEN, "token expired\n")
                }
                Err(crate::auth::TokenError::Invalid) => {
                    return text(StatusCode::FORBIDDEN, "invalid token\n")
                }
            }
        }
        (Some(crate::auth::PREFIX), _) => return text(StatusCode::FORBIDDEN, "invalid token\n"),
        (_, Some(_)) => return text(StatusCode::FORBIDDEN, "token required\n"),
        (_, None) => (&segs[..], None),
    };
    if state.config.rate_limit_rps > 0 {
        let ip = req.extensions().get::<RequestInfo>().map(|i| i.client);
        if let Some(ip) = ip {
            if let Err(wait) = rate_limit(state, ip).await {
                state.metrics.rate_limited.inc();
                return HttpResponse::TooManyRequests()
                    .insert_header((
                        header::RETRY_AFTER,
                        crate::limits::retry_after_secs(wait).to_string(),
                    ))
                    .content_type("text/plain; charset=utf-8")
                    .body("rate limited\n");
            }
        }
    }
    // open + fstat on the worker: cheaper than a thread-pool hop for local files.
    let opened = match state.open_files.open(&state.root, segs) {
        Ok(o) => o,
        Err(_) => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    if let Some(info) = req.extensions().get::<RequestInfo>() {
        info.kind.set(opened.resolved.kind.label());
    }
    serve(req, state, &opened, token_left)
}

/// The per-client token bucket: the cluster's when an extension shares one (one bucket per
/// client across every node), this node's own otherwise or while the shared one cannot answer.
async fn rate_limit(state: &State, ip: std::net::IpAddr) -> Result<(), Duration> {
    let c = &state.config;
    if let Some(shared) = &state.shared_limit {
        if let Some(verdict) = shared
            .acquire(ip, c.rate_limit_rps, c.rate_limit_burst)
            .await
        {
            return verdict;
        }
    }
    match &state.limiter {
        Some(l) => l.check(ip),
        None => Ok(()),
    }
}

/// The whole file (small files only: manifests, hot-cache candidates).
fn read_all(source: &Source, len: u64) -> std::io::Result<Bytes> {
    match source {
        Source::Memory(b) => Ok(b.clone()),
        Source::File(f) => files::read_whole(f, len),
    }
}

/// The response for an opened package file; `token_left` is the remaining lifetime of the
/// signed URL it was requested with.
fn serve(
    req: &HttpRequest,
    state: &State,
    opened: &files::Opened,
    token_left: Option<u64>,
) -> HttpResponse {
    let (r, entity) = (&opened.resolved, &opened.entity);
    let is_head = req.method() == Method::HEAD;
    // GET of a file on a plain HTTP/1.1 connection: sendfile (the connection sends the ranges;
    // Content-Length is set here since actix sees only markers). Otherwise the copying body.
    let splices = (state.config.sendfile && !is_head)
        .then(|| req.conn_data::<Rc<Splices>>().cloned())
        .flatten();
    let respond = |b: &mut HttpResponseBuilder, source: Source, pieces: Vec<Piece>, counter| {
        let total = body::total_len(&pieces);
        match (source, &splices) {
            (Source::File(f), Some(sp)) if total >= SENDFILE_MIN => b
                .no_chunking(total)
                .body(SplicedBody::new(f, pieces, sp.clone(), counter)),
            (source, _) => {
                let body = FileBody::new(source, pieces, counter);
                b.body(if is_head { body.head_only() } else { body })
            }
        }
    };
    let (len, modified, etag) = (entity.len, entity.modified, &entity.etag);
    let mut source = match &entity.bytes {
        Some(b) => Source::Memory(b.clone()),
        None => Source::File(entity.file.clone()),
    };
    if let Some(cache) = &state.cache {
        if len <= state.config.cache_max_file_bytes {
            let key = (r.path.clone(), etag.to_string(), None);
            match cache.get(&key) {
                Some(b) => {
                    state.metrics.cache_hits.inc();
                    source = Source::Memory(b);
                }
                None => {
                    state.metrics.cache_misses.inc();
                    if let Ok(b) = read_all(&source, len) {
                        cache.insert(key, b.clone());
                        source = Source::Memory(b);
                    }
                }
            }
        }
    }
    let h = req.headers();
    let range_header = header_str(h, header::RANGE);
    // Manifests are compressed for clients that accept it — never segments, never ranges.
    let coding = if r.kind.is_manifest() && range_header.is_none() && len <= MAX_COMPRESS_BYTES {
        compress::negotiate(header_str(h, header::ACCEPT_ENCODING))
    } else {
        None
    };
    let mut compressed: Option<Bytes> = None;
    if let Some(c) = coding {
        let key = (r.path.clone(), etag.to_string(), Some(c));
        compressed = match state.compressed.get(&key) {
            Some(b) => Some(b),
            None => match read_all(&source, len).and_then(|raw| compress::compress(&raw, c)) {
                Ok(z) => {
                    state.compressed.insert(key, z.clone());
                    Some(z)
                }
                Err(_) => None,
            },
        };
    }
    let coding: Option<Coding> = compressed.as_ref().and(coding);
    let etag_v = coding.map(|c| compress::variant_etag(etag, c));
    let validators = Validators {
        etag: etag_v.as_deref().unwrap_or(etag),
        last_modified: modified,
    };
    let conds = Conditions {
        if_match: header_str(h, header::IF_MATCH),
        if_none_match: header_str(h, header::IF_NONE_MATCH),
        if_modified_since: header_str(h, header::IF_MODIFIED_SINCE),
        if_unmodified_since: header_str(h, header::IF_UNMODIFIED_SINCE),
    };
    // A cache must not keep a signed response fresh past its token's expiry.
    let signed;
    let (cache_control, cdn_cache_control) = match token_left {
        None if r.kind.is_manifest() => (
            &state.cache_control.manifest,
            state.cache_control.manifest_cdn.as_ref(),
        ),
        None => (&state.cache_control.segment, None),
        Some(left) => {
            signed = state.cache_control.signed(r.kind.is_manifest(), left);
            (&signed.0, signed.1.as_ref())
        }
    };
    let etag_header = match &etag_v {
        Some(v) => hv(v),
        None => entity.headers.etag.clone(),
    };
    let common = |b: &mut HttpResponseBuilder| {
        b.insert_header((header::ETAG, etag_header.clone()))
            .insert_header((header::LAST_MODIFIED, entity.headers.last_modified.clone()))
            .insert_header((header::CACHE_CONTROL, cache_control.clone()))
            .insert_header((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
        if r.kind.is_manifest() {
            b.insert_header((header::VARY, HeaderValue::from_static("Accept-Encoding")));
            if let Some(cdn) = cdn_cache_control {
                b.insert_header((CDN_CACHE_CONTROL, cdn.clone()));
            }
        }
    };
    match conditional::evaluate(true, &conds, &validators) {
        Decision::Proceed => {}
        Decision::NotModified => {
            let mut b = HttpResponse::NotModified();
            common(&mut b);
            return b.finish();
        }
        Decision::PreconditionFailed => {
            return text(StatusCode::PRECONDITION_FAILED, "precondition failed\n");
        }
    }
    let counter = Some(state.metrics.sent_counter(r.kind.label()));
    if let (Some(c), Some(z)) = (coding, compressed) {
        let mut b = HttpResponse::Ok();
        common(&mut b);
        let n = z.len() as u64;
        b.content_type(HeaderValue::from_static(r.kind.mime()))
            .insert_header((header::CONTENT_ENCODING, c.token()));
        return respond(
            &mut b,
            Source::Memory(z),
            vec![Piece::Range { offset: 0, len: n }],
            counter,
        );
    }
    let outcome = match header_str(h, header::IF_RANGE) {
        Some(ir) if !conditional::if_range_matches(ir, &validators) => RangeOutcome::Full,
        _ => range::evaluate(range_header, len),
    };
    match outcome {
        RangeOutcome::Full => {
            let mut b = HttpResponse::Ok();
            common(&mut b);
            b.content_type(HeaderValue::from_static(r.kind.mime()));
            respond(
                &mut b,
                source,
                vec![Piece::Range { offset: 0, len }],
                counter,
            )
        }
        RangeOutcome::Partial(ranges) if ranges.len() == 1 => {
            let br = &ranges[0];
            let mut b = HttpResponse::PartialContent();
            common(&mut b);
            b.content_type(HeaderValue::from_static(r.kind.mime()))
                .insert_header((header::CONTENT_RANGE, range::content_range(br, len)));
            let piece = Piece::Range {
                offset: br.start,
                len: br.len(),
            };
            respond(&mut b, source, vec![piece], counter)
        }
        RangeOutcome::Partial(ranges) => {
            let boundary = range::multipart_boundary(rand::random());
            let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
            for br in &ranges {
                pieces.push(Piece::Bytes(Bytes::from(range::multipart_part_header(
                    &boundary,
                    r.kind.mime(),
                    br,
                    len,
                ))));
                pieces.push(Piece::Range {
                    offset: br.start,
                    len: br.len(),
                });
            }
            pieces.push(Piece::Bytes(Bytes::from(range::multipart_end(&boundary))));
            let mut b = HttpResponse::PartialContent();
            common(&mut b);
            b.content_type(format!("multipart/byteranges; boundary={boundary}"));
            respond(&mut b, source, pieces, counter)
        }
        RangeOutcome::Unsatisfiable => {
            let mut b = HttpResponse::RangeNotSatisfiable();
            common(&mut b);
            b.insert_header((header::CONTENT_RANGE, range::unsatisfied_range(len)))
                .finish()
        }
    }
}

/// Smaller bodies are read and written in one send with the head: cheaper than a corked head
/// plus a `sendfile` for a manifest of a few kilobytes.
const SENDFILE_MIN: u64 = 64 * 1024;

/// `X-Request-Id`.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `CDN-Cache-Control` (RFC 9213).
const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `X-Forwarded-For`.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Valid client-supplied request ids are echoed; others are replaced by 128 random bits in hex.
fn request_id(h: &HeaderMap) -> HeaderValue {
    if let Some(v) = h.get(X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(u8::is_ascii_graphic) {
            return v.clone();
        }
    }
    let n: u128 = rand::random();
    let mut hex = [0u8; 32];
    for (i, d) in hex.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).unwrap_or(HeaderValue::from_static("-"))
}

/// Request id, client address, CORS response headers, `Connection: close` while draining,
/// metrics and the JSON access log: one middleware, since each layer costs allocations on
/// every request.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let state = req.app_data::<web::Data<State>>().cloned();
    let id = request_id(req.headers());
    let peer = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let client = match &state {
        Some(s) => crate::limits::client_ip(
            peer,
            header_str(req.headers(), X_FORWARDED_FOR),
            &s.config.trusted_proxies,
        ),
        None => peer,
    };
    let method = req.method().clone();
    // What only the access log needs is copied only when it is on.
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO);
    let path = logged.then(|| req.uri().path().to_string());
    let range = header_str(req.headers(), header::RANGE)
        .filter(|_| logged)
        .map(str::to_string);
    let origin = req.headers().get(header::ORIGIN).cloned();
    req.extensions_mut().insert(RequestInfo {
        client,
        kind: Cell::new("other"),
    });
    if let Some(s) = &state {
        s.metrics.in_flight.inc();
    }
    let head_clock = req.conn_data::<Rc<HeadClock>>().cloned();
    if let Some(c) = &head_clock {
        c.request_started();
    }
    let res = match &state {
        Some(s) if !named_route(req.path(), &s.extension_prefixes, &s.extension_paths) => {
            let (req, _) = req.into_parts();
            let res = package_file(&req, s).await;
            Ok(ServiceResponse::new(req, res))
        }
        _ => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
    };
    if let Some(c) = &head_clock {
        c.request_done();
    }
    let mut res = match res {
        Ok(r) => r,
        Err(e) => {
            if let Some(s) = &state {
                s.metrics.in_flight.dec();
            }
            return Err(e);
        }
    };
    let kind = res
        .request()
        .extensions()
        .get::<RequestInfo>()
        .map_or("other", |i| i.kind.get());
    let status = res.status();
    res.headers_mut().insert(X_REQUEST_ID, id.clone());
    // Every response (but preflights) carries the same CORS headers whatever the request, or
    // names Origin in Vary: shared caches replay it to other clients (see `cors`).
    if let Some(s) = &state {
        if method != Method::OPTIONS {
            s.cors.apply(origin.as_ref(), res.headers_mut());
        }
    }
    // Once readiness is off (shutdown began), every HTTP/1 response carries `Connection:
    // close`, so keep-alive clients move to a new connection (another instance sharing the
    // port, or another backend) during the grace period instead of being cut when the listener
    // closes: a connection idle between two requests at that moment would be closed unanswered.
    if state
        .as_ref()
        .is_some_and(|s| !s.ready.load(Ordering::Relaxed))
    {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    // Body bytes of the response (none for HEAD, whatever its Content-Length says).
    let bytes = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| match res.response().body().size() {
            actix_web::body::BodySize::Sized(n) => Some(n),
            _ => None,
        })
        .filter(|_| method != Method::HEAD)
        .unwrap_or(0);
    let elapsed = start.elapsed();
    if let Some(s) = &state {
        s.metrics.in_flight.dec();
        s.metrics
            .record(status.as_u16(), kind, elapsed.as_secs_f64());
    }
    tracing::info!(
        target: "access",
        method = %method,
        path = path.as_deref().unwrap_or_default(),
        status = status.as_u16(),
        bytes,
        duration_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        range = range.as_deref().unwrap_or("-"),
        client = %client,
        request_id = id.to_str().unwrap_or_default(),
        kind,
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test;

    /// A ROOT holding one package `name` with a master playlist.
    fn root_with(name: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let hls = t.path().join(name).join("hls");
        std::fs::create_dir_all(&hls).unwrap();
        std::fs::write(hls.join("master.m3u8"), b"#EXTM3U\n").unwrap();
        t
    }

    /// The origin's App (middleware and routes) over `state`.
    async fn app(
        state: State,
    ) -> impl actix_web::dev::Service<
        actix_http::Request,
        Response = ServiceResponse<BoxBody>,
        Error = actix_web::Error,
    > {
        test::init_service(
            actix_web::App::new()
                .app_data(web::Data::new(state))
                .wrap(actix_web::middleware::from_fn(middleware))
                .configure(configure),
        )
        .await
    }

    /// Every named route is reached through the router, package paths straight from the
    /// middleware, and both give the same answers as the router would.
    #[actix_web::test]
    async fn named_routes_are_routed_and_package_paths_served_directly() {
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/debug/pprof/profile",
            "/play/pkg",
            "/_player/hls.min.js",
        ] {
            assert!(named_route(p, &[], &[]), "{p}");
        }
        // An extension's prefixes are routed too, and only when it is installed.
        for p in ["/api/v1/session", "/api/v1/viewers/movie.mp4"] {
            assert!(named_route(p, &["/api/"], &[]), "{p}");
            assert!(!named_route(p, &[], &[]), "{p}");
        }
        // Its exact paths, only those.
        assert!(named_route("/", &[], &["/"]));
        assert!(!named_route("/pkg/hls/master.m3u8", &[], &["/"]));
        for p in [
            "/pkg/hls/master.m3u8",
            "/play",
            "/playx/a.ts",
            "/_t/1/s/pkg/a.ts",
            "/",
        ] {
            assert!(!named_route(p, &["/api/"], &[]), "{p}");
        }
        let t = root_with("play");
        let config = crate::config::Config {
            root: t.path().to_path_buf(),
            ..Default::default()
        };
        let app = app(State::new(config).unwrap()).await;
        let get = |p: &'static str| test::TestRequest::get().uri(p).to_request();
        // A package named like a route prefix: its files are still files.
        let res = test::call_service(&app, get("/play/hls/master.m3u8")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/vnd.apple.mpegurl"
        );
        assert!(res.headers().contains_key("x-request-id"));
        let res = test::call_service(&app, get("/healthz")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let res = test::call_service(&app, get("/play/hls/missing.m3u8")).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = test::call_service(&app, get("/play/../etc/passwd")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }

    /// The player page of a nested package (the video service's `ROOT/<principal>/<name>`);
    /// names are escaped in the page; a missing one is 404.
    #[actix_web::test]
    async fn player_page_of_a_nested_package() {
        let t = root_with("alice/holiday");
        let config = crate::config::Config {
            root: t.path().to_path_buf(),
            ..Default::default()
        };
        let app = app(State::new(config).unwrap()).await;
        let get = |p: &'static str| test::TestRequest::get().uri(p).to_request();
        let res = test::call_service(&app, get("/play/alice/holiday")).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = test::read_body(res).await;
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(r#"const pkg = "alice/holiday";"#), "{body}");
        for p in ["/play/alice/nothing", "/play/nothing", "/play/alice/../x"] {
            let res = test::call_service(&app, get(p)).await;
            assert!(res.status().is_client_error(), "{p}: {}", res.status());
        }
        let page = player_page("a\"</script><b>&");
        assert!(page.contains(r#"const pkg = "a\u0022\u003c/script\u003e\u003cb\u003e\u0026";"#));
        assert!(
            page.contains("<h1>a&quot;&lt;/script&gt;&lt;b&gt;&amp;</h1>"),
            "{page}"
        );
    }

    /// The extension's shared limit decides while it answers; when it cannot (None) the node's
    /// own bucket does.
    struct Scripted(std::sync::Mutex<Vec<Option<Result<(), Duration>>>>);

    impl crate::extension::SharedLimit for Scripted {
        fn acquire(
            &self,
            _client: std::net::IpAddr,
            _rps: u32,
            _burst: u32,
        ) -> crate::extension::Verdict<'_> {
            let next = self.0.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    #[actix_web::test]
    async fn shared_limit_first_node_bucket_as_fallback() {
        let t = root_with("pkg");
        let config = crate::config::Config {
            root: t.path().to_path_buf(),
            rate_limit_rps: 1,
            rate_limit_burst: 1,
            ..Default::default()
        };
        let mut state = State::new(config).unwrap();
        // Allowed, refused by the cluster, then unavailable twice: the node's bucket (burst 1)
        // allows one and refuses the next.
        state.shared_limit = Some(std::sync::Arc::new(Scripted(std::sync::Mutex::new(vec![
            Some(Ok(())),
            Some(Err(Duration::from_millis(1500))),
            None,
            None,
        ]))));
        let app = app(state).await;
        let mut got = Vec::new();
        for _ in 0..4 {
            let req = test::TestRequest::get()
                .uri("/pkg/hls/master.m3u8")
                .to_request();
            let res = test::call_service(&app, req).await;
            got.push((
                res.status().as_u16(),
                res.headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap().to_string()),
            ));
        }
        assert_eq!(
            got,
            [
                (200, None),
                (429, Some("2".into())),
                (200, None),
                (429, Some("1".into()))
            ]
        );
    }
}
