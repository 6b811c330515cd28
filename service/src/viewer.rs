//! Viewer-state API under `/api/v1`: sessions, playback positions (resume on any node), live
//! viewer counts and the playback event stream. Same behaviour on both [`crate::store`]
//! backends; answers 503 while the shared backend is unreachable.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::config::Config;
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::session::{SessionError, Sessions, COOKIE};
use crate::store::{now_ms, Position, Store, StoreError, StoreSettings};
use origin::limits::retry_after_secs;
use origin::State as Origin;

/// Largest request body accepted by the API.
const MAX_BODY: usize = 4096;
/// Largest position accepted (seconds; about 115 days).
const MAX_POSITION_S: f64 = 1e7;

/// What the viewer-state handlers share.
pub struct Viewers {
    config: Config,
    /// Viewer state (in-process or Redis).
    pub store: Store,
    sessions: Sessions,
    /// Playback events seen by this node (from every node with Redis), as JSON lines.
    pub events: tokio::sync::broadcast::Sender<String>,
    metrics: Arc<Metrics>,
    node: String,
    /// Whether session cookies get `Secure` (the origin serves TLS).
    secure_cookie: bool,
}

impl Viewers {
    /// The viewer state of `origin`'s node, from a validated config.
    pub fn new(config: Config, origin: &Origin) -> Result<Self, ServiceError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new(&origin.metrics)?);
        let node = origin.node.clone();
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let settings = StoreSettings {
            position_ttl: Duration::from_secs(config.position_ttl_s.max(1)),
            viewer_window: Duration::from_secs(config.viewer_window_s.max(1)),
            node: node.clone(),
        };
        let store = match &config.redis {
            Some(url) => Store::Redis(Arc::new(
                crate::store::redis::RedisStore::new(url, settings, metrics.clone())
                    .map_err(ServiceError::Config)?,
            )),
            None => Store::Embedded(Box::new(crate::store::embedded::EmbeddedStore::new(
                settings,
                events.clone(),
            ))),
        };
        let session_key = match config
            .session_key
            .as_deref()
            .or(origin.config.signing_key.as_deref())
        {
            Some(k) => origin::auth::key_bytes(k),
            None => {
                if config.redis.is_some() {
                    tracing::warn!(target: "service", "no session_key: viewer sessions are valid on this node only (give every node the same --session-key)");
                }
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        tracing::info!(
            target: "service",
            node = %node,
            state = if store.is_shared() { "redis" } else { "in-process" },
            "viewer state ready"
        );
        Ok(Viewers {
            sessions: Sessions::new(
                session_key,
                Duration::from_secs(config.session_ttl_s.max(60)),
            ),
            store,
            events,
            metrics,
            node,
            secure_cookie: origin.config.tls_cert.is_some(),
            config,
        })
    }

    /// Background work (call on the server's runtime): the embedded store's housekeeping, or
    /// Redis' health watch (degrade and recover by itself) and the relay of every node's
    /// playback events to this node's event stream.
    pub fn spawn_tasks(self: &Arc<Self>) {
        match &self.store {
            Store::Redis(r) => {
                actix_web::rt::spawn(r.clone().health_loop());
                actix_web::rt::spawn(r.clone().forward_events(self.events.clone()));
            }
            Store::Embedded(_) => {
                let me = self.clone();
                actix_web::rt::spawn(async move {
                    loop {
                        actix_web::rt::time::sleep(Duration::from_secs(60)).await;
                        me.store.housekeeping();
                    }
                });
            }
        }
    }
}

/// Registers the API routes with `data` as their state.
pub fn configure(cfg: &mut web::ServiceConfig, data: web::Data<Viewers>) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(data)
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .route("/session", web::post().to(new_session))
            .route("/playback", web::post().to(save))
            .route("/playback/{package}", web::get().to(load))
            .route("/viewers/{package}", web::get().to(viewers))
            .route("/events", web::get().to(events)),
    );
}

fn reply(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(body.to_string())
}

fn error(status: StatusCode, msg: &str) -> HttpResponse {
    reply(status, json!({ "error": msg }))
}

fn store_error(state: &Viewers, e: StoreError) -> HttpResponse {
    match e {
        StoreError::Unavailable => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "viewer state is temporarily unavailable",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        StoreError::Backend(m) => {
            tracing::error!(target: "service", node = %state.node, "state backend: {m}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "viewer state error")
        }
    }
}

/// The session token from `Authorization: Bearer` or the session cookie.
fn token(req: &HttpRequest) -> Option<String> {
    let h = req.headers();
    if let Some(t) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    h.get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)
                .and_then(|r| r.strip_prefix('='))
        })
        .map(str::to_string)
}

/// The viewer of a request, or the 401 to answer.
fn viewer(req: &HttpRequest, state: &Viewers) -> Result<String, Box<HttpResponse>> {
    let Some(t) = token(req) else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "no session: POST /api/v1/session first",
        )));
    };
    state.sessions.verify(&t, SystemTime::now()).map_err(|e| {
        Box::new(match e {
            SessionError::Invalid => error(StatusCode::UNAUTHORIZED, "invalid session token"),
            SessionError::Expired => error(StatusCode::UNAUTHORIZED, "session expired"),
        })
    })
}

/// Whether `name` is an existing package under the origin's ROOT.
/// Whether `name` is a package under ROOT: one directory (`movie`) or a nested one
/// (`alice/holiday`, as the video service publishes them; `alice%2Fholiday` in a path segment),
/// with the origin's path rules (no traversal, no hidden names).
fn package_exists(origin: &Origin, name: &str) -> bool {
    origin::files::segments(&format!("/{name}")).is_ok_and(|s| !s.is_empty() && s.join("/") == name)
        && origin.root.path().join(name).is_dir()
}

/// `POST /api/v1/session`: a new viewer id, as a cookie and in the body.
async fn new_session(state: web::Data<Viewers>) -> HttpResponse {
    let s = state.sessions.issue(SystemTime::now());
    let secure = if state.secure_cookie { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        s.token,
        state.sessions.ttl().as_secs()
    );
    let mut r = reply(
        StatusCode::CREATED,
        json!({ "viewer": s.viewer, "token": s.token, "expires": s.expires }),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Body of `POST /api/v1/playback`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    package: String,
    position_s: f64,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    rendition: Option<String>,
}

/// `POST /api/v1/playback`: saves the viewer's position, counts it live, publishes an event.
async fn save(
    req: HttpRequest,
    state: web::Data<Viewers>,
    origin: web::Data<Origin>,
    body: Bytes,
) -> HttpResponse {
    let count = |result: &str| {
        state
            .metrics
            .playback_writes
            .with_label_values(&[result])
            .inc()
    };
    let viewer = match viewer(&req, &state) {
        Ok(v) => v,
        Err(r) => {
            count("unauthorized");
            return *r;
        }
    };
    let b: SaveBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            count("invalid");
            let msg = format!("invalid playback JSON: {e}");
            return error(StatusCode::BAD_REQUEST, &msg);
        }
    };
    if !b.position_s.is_finite() || !(0.0..=MAX_POSITION_S).contains(&b.position_s) {
        count("invalid");
        return error(
            StatusCode::BAD_REQUEST,
            "position_s must be a number of seconds from 0",
        );
    }
    if let Some(r) = &b.rendition {
        if r.len() > 64 || !r.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
            count("invalid");
            return error(
                StatusCode::BAD_REQUEST,
                "rendition must be at most 64 printable ASCII characters",
            );
        }
    }
    if !package_exists(&origin, &b.package) {
        count("invalid");
        return error(StatusCode::NOT_FOUND, "no such package");
    }
    let c = &state.config;
    match state
        .store
        .acquire(
            &format!("pb:{viewer}"),
            c.playback_write_rps,
            c.playback_write_burst,
        )
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(wait)) => {
            count("rate_limited");
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too many playback writes");
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
            return r;
        }
        Err(e) => {
            count("unavailable");
            return store_error(&state, e);
        }
    }
    let p = Position {
        package: b.package,
        position_s: b.position_s,
        paused: b.paused,
        rendition: b.rendition,
        updated_ms: now_ms(),
        node: state.node.clone(),
    };
    match state.store.save(&viewer, p).await {
        Ok(e) => {
            count("ok");
            state
                .metrics
                .live_viewers
                .with_label_values(&[&e.position.package])
                .set(e.viewers as i64);
            reply(
                StatusCode::OK,
                json!({ "saved": e.position, "viewers": e.viewers }),
            )
        }
        Err(e) => {
            count("unavailable");
            store_error(&state, e)
        }
    }
}

/// `GET /api/v1/playback/<package>`: the viewer's last position (204 when none saved).
async fn load(
    req: HttpRequest,
    state: web::Data<Viewers>,
    origin: web::Data<Origin>,
    path: web::Path<String>,
) -> HttpResponse {
    let viewer = match viewer(&req, &state) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let package = path.into_inner();
    if !package_exists(&origin, &package) {
        return error(StatusCode::NOT_FOUND, "no such package");
    }
    match state.store.load(&viewer, &package).await {
        Ok(Some(p)) => reply(StatusCode::OK, json!(p)),
        Ok(None) => HttpResponse::NoContent()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Err(e) => store_error(&state, e),
    }
}

/// `GET /api/v1/viewers/<package>`: viewers seen within the viewer window.
async fn viewers(
    state: web::Data<Viewers>,
    origin: web::Data<Origin>,
    path: web::Path<String>,
) -> HttpResponse {
    let package = path.into_inner();
    if !package_exists(&origin, &package) {
        return error(StatusCode::NOT_FOUND, "no such package");
    }
    match state.store.viewers(&package).await {
        Ok(n) => {
            state
                .metrics
                .live_viewers
                .with_label_values(&[&package])
                .set(n as i64);
            reply(
                StatusCode::OK,
                json!({ "package": package, "viewers": n, "window_s": state.config.viewer_window_s, "node": state.node }),
            )
        }
        Err(e) => store_error(&state, e),
    }
}

/// `GET /api/v1/events`: playback events as Server-Sent Events (every node's with Redis).
/// Operator endpoint: only on the admin listener when one is configured. Ends when the node
/// starts draining, so it never holds a shutdown.
async fn events(
    req: HttpRequest,
    state: web::Data<Viewers>,
    origin: web::Data<Origin>,
) -> HttpResponse {
    if !origin::routes::admin_allowed(&req, &origin) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let rx = state.events.subscribe();
    let st = origin.into_inner();
    let stream =
        futures_util::stream::unfold((rx, st, 0u32), |(mut rx, st, mut idle)| async move {
            use std::sync::atomic::Ordering;
            use tokio::sync::broadcast::error::RecvError;
            loop {
                if !st.ready.load(Ordering::Relaxed) {
                    return None;
                }
                match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                    Ok(Ok(ev)) => {
                        let chunk = Bytes::from(format!("data: {ev}\n\n"));
                        return Some((Ok::<_, Infallible>(chunk), (rx, st, 0)));
                    }
                    Ok(Err(RecvError::Lagged(_))) => continue,
                    Ok(Err(RecvError::Closed)) => return None,
                    Err(_) => {
                        idle += 1;
                        if idle >= 15 {
                            return Some((
                                Ok(Bytes::from_static(b": keep-alive\n\n")),
                                (rx, st, 0),
                            ));
                        }
                    }
                }
            }
        });
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .content_type("text/event-stream")
        .streaming(stream)
}
