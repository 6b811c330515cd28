//! tus core protocol: OPTIONS (discovery), HEAD (the offset), PATCH (bytes at the offset), the
//! `Tus-Resumable` check (412 for another version) and the streaming, durable write of a body.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode};
use actix_web::rt::task::{spawn_blocking, JoinHandle};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::auth::Principal;
use super::block::Block;
use super::checksum::{self, Expected};
use super::lock::Held;
use super::store::{Appender, UploadState};
use super::{
    blocking, expiration, tus_response, Entry, TusError, Uploads, EXTENSIONS, TUS_VERSION,
};

/// Content type of PATCH bodies.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";
/// Bytes gathered before one write to the data file (two such buffers per body).
const WRITE_BUF: usize = 1 << 20;
/// Without a checksum, the offset is made durable at least every this many bytes of a long
/// PATCH, so a crash loses little.
const COMMIT_EVERY: u64 = 16 << 20;
/// A body that sends nothing for this long is treated as cut (the upload's lock is released;
/// what arrived is kept).
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// `/api/v1/uploads/{id}`: HEAD, PATCH, DELETE, OPTIONS.
pub async fn upload(
    req: HttpRequest,
    payload: web::Payload,
    id: web::Path<String>,
    up: web::Data<Uploads>,
) -> HttpResponse {
    let up = up.into_inner();
    let r = match *req.method() {
        Method::OPTIONS => {
            return super::cors::preflight(&req, &up).unwrap_or_else(|| options(&up))
        }
        Method::HEAD => head(&req, &up, &id).await,
        Method::PATCH => patch(&req, payload, &up, &id).await,
        Method::DELETE => super::termination::delete(&req, &up, &id).await,
        _ => return method_not_allowed("HEAD, PATCH, DELETE, OPTIONS"),
    };
    r.unwrap_or_else(|e| e.response())
}

pub(super) fn method_not_allowed(allow: &'static str) -> HttpResponse {
    tus_response(StatusCode::METHOD_NOT_ALLOWED)
        .insert_header((header::ALLOW, allow))
        .finish()
}

/// OPTIONS: what this server offers (no token needed).
pub(super) fn options(up: &Uploads) -> HttpResponse {
    tus_response(StatusCode::NO_CONTENT)
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Max-Size", up.max_size.to_string()))
        .insert_header(("Tus-Extension", EXTENSIONS))
        .insert_header(("Tus-Checksum-Algorithm", checksum::ALGORITHMS))
        .finish()
}

/// 412 unless the request speaks tus 1.0.0.
pub(super) fn check_version(req: &HttpRequest) -> Result<(), TusError> {
    match req.headers().get("Tus-Resumable").map(|v| v.as_bytes()) {
        Some(b"1.0.0") => Ok(()),
        Some(_) => Err(TusError::new(
            StatusCode::PRECONDITION_FAILED,
            "unsupported Tus-Resumable version (this server speaks 1.0.0)",
        )),
        None => Err(TusError::new(
            StatusCode::PRECONDITION_FAILED,
            "Tus-Resumable: 1.0.0 is required",
        )),
    }
}

/// The version check, then the bearer token (401).
pub(super) fn authenticate(req: &HttpRequest, up: &Uploads) -> Result<Principal, TusError> {
    check_version(req)?;
    up.tokens
        .authenticate(
            req.headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        )
        .ok_or_else(|| TusError::new(StatusCode::UNAUTHORIZED, "a valid bearer token is required"))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, TusError> {
    h.get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| TusError::new(StatusCode::BAD_REQUEST, format!("{name} is not ASCII")))
        })
        .transpose()
}

/// A non-negative decimal header (`Upload-Offset`, `Upload-Length`, `Content-Length`).
pub(super) fn header_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, TusError> {
    let Some(v) = header_str(h, name)? else {
        return Ok(None);
    };
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TusError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be a non-negative integer"),
        ));
    }
    v.parse()
        .map(Some)
        .map_err(|_| TusError::new(StatusCode::BAD_REQUEST, format!("{name} is too large")))
}

/// Whether the body is tus bytes (415 for a body of another type).
pub(super) fn check_content_type(req: &HttpRequest) -> Result<bool, TusError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some(OFFSET_OCTET_STREAM) => Ok(true),
        _ => Err(TusError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be {OFFSET_OCTET_STREAM}"),
        )),
    }
}

/// The `Upload-Checksum` of the request, if any (400 when unusable).
pub(super) fn expected_checksum(req: &HttpRequest) -> Result<Option<Expected>, TusError> {
    header_str(req.headers(), "Upload-Checksum")?
        .map(|v| {
            Expected::parse(v).map_err(|e| TusError::new(StatusCode::BAD_REQUEST, e.to_string()))
        })
        .transpose()
}

/// The lock of `id` (423 when another request holds it).
pub(super) async fn lock(up: &Uploads, id: &str) -> Result<Arc<Held>, TusError> {
    match up.locker.try_lock(id).await {
        Ok(Some(h)) => Ok(Arc::new(h)),
        Ok(None) => Err(TusError::new(
            StatusCode::LOCKED,
            "another request is writing this upload",
        )),
        Err(e) => Err(TusError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

/// Headers of an upload's state.
fn with_state(b: &mut actix_web::HttpResponseBuilder, entry: &Entry) {
    let (length, expires, incomplete) = {
        let i = entry.info();
        (i.length, i.expires, i.state == UploadState::Incomplete)
    };
    b.insert_header(("Upload-Offset", entry.offset().to_string()))
        .insert_header(("Upload-Length", length.to_string()));
    if incomplete {
        b.insert_header(("Upload-Expires", expiration::http_date(expires)));
    }
}

async fn head(req: &HttpRequest, up: &Arc<Uploads>, id: &str) -> Result<HttpResponse, TusError> {
    let p = authenticate(req, up)?;
    let entry = up.lookup(id, &p.name).await?;
    let mut b = tus_response(StatusCode::OK);
    with_state(&mut b, &entry);
    let meta = entry.info().metadata.clone();
    if !meta.is_empty() {
        b.insert_header(("Upload-Metadata", meta));
    }
    Ok(b.finish())
}

async fn patch(
    req: &HttpRequest,
    payload: web::Payload,
    up: &Arc<Uploads>,
    id: &str,
) -> Result<HttpResponse, TusError> {
    let p = authenticate(req, up)?;
    let entry = up.lookup(id, &p.name).await?;
    check_content_type(req)?;
    let offset = header_u64(req.headers(), "Upload-Offset")?
        .ok_or_else(|| TusError::new(StatusCode::BAD_REQUEST, "Upload-Offset is required"))?;
    let expected = expected_checksum(req)?;
    let held = lock(up, id).await?;
    let entry = up.locked_entry(id, entry).await?;
    let current = entry.offset();
    if offset != current {
        up.metrics.rejected.with_label_values(&["offset"]).inc();
        return Err(TusError::new(
            StatusCode::CONFLICT,
            format!("Upload-Offset {offset} is not the upload's offset {current}"),
        ));
    }
    let content_length = header_u64(req.headers(), "Content-Length")?;
    write_body(up, id, &entry, held, payload, expected, content_length).await?;
    let mut b = tus_response(StatusCode::NO_CONTENT);
    with_state(&mut b, &entry);
    Ok(b.finish())
}

/// Receives a body at the upload's offset: streamed to the data file through a bounded buffer,
/// then fdatasynced before the new offset is made durable (and only then visible). With a
/// checksum the chunk is kept only if it matches (460 otherwise, the offset unchanged). Bytes
/// past `Upload-Length` are refused (413) before they are written. Completes the upload when
/// its last byte is durable. Returns the new offset.
pub(super) async fn write_body(
    up: &Arc<Uploads>,
    id: &str,
    entry: &Arc<Entry>,
    held: Arc<Held>,
    mut payload: web::Payload,
    expected: Option<Expected>,
    content_length: Option<u64>,
) -> Result<u64, TusError> {
    let start = entry.offset();
    let length = entry.info().length;
    let too_long = || {
        TusError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body goes past Upload-Length {length}"),
        )
    };
    if content_length.is_some_and(|n| n > length - start) {
        up.metrics.rejected.with_label_values(&["too_long"]).inc();
        return Err(too_long());
    }
    let failed = |what: &str, e: io::Error| TusError::internal(&format!("{what} upload {id}"), e);
    let store = up.store.clone();
    let owned = id.to_string();
    let h = held.clone();
    let appender = blocking(move || {
        let _h = h;
        store.open_data(&owned, start)
    })
    .await
    .map_err(|e| failed("opening", e))?;
    let mut pipe = Pipeline {
        idle: Some((appender, Block::new(WRITE_BUF))),
        busy: None,
        held: held.clone(),
    };
    let mut buf = Block::new(WRITE_BUF);
    buf.begin(start);
    // Bytes received, the offset of the last commit asked for, and the last durable one.
    let (mut received, mut asked, mut committed) = (start, start, start);
    let mut hasher = expected.as_ref().map(|e| e.hasher());
    let mut refused: Option<TusError> = None;
    let mut cut_short = false;
    loop {
        let chunk = match actix_web::rt::time::timeout(BODY_IDLE, payload.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(c))) => c,
            Ok(Some(Err(e))) => {
                tracing::info!(target: "service", upload = id, error = %e, "upload body cut short");
                cut_short = true;
                break;
            }
            Err(_) => {
                tracing::info!(target: "service", upload = id, "upload body idle for {BODY_IDLE:?}: cut short");
                cut_short = true;
                break;
            }
        };
        if chunk.len() as u64 > length - received {
            refused = Some(too_long());
            up.metrics.rejected.with_label_values(&["too_long"]).inc();
            break;
        }
        up.metrics.bytes_received.inc_by(chunk.len() as u64);
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        received += chunk.len() as u64;
        // Whole buffers only (the chunk is copied once, into a reused buffer, so the
        // connection's read buffer is free again at once): every write but a body's last is
        // WRITE_BUF bytes.
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let n = buf.push(rest);
            rest = &rest[n..];
            if buf.room() > 0 {
                continue;
            }
            let at = received - rest.len() as u64;
            let commit = hasher.is_none() && at - asked >= COMMIT_EVERY;
            if commit {
                asked = at;
            }
            let done;
            (buf, done) = pipe
                .submit(buf, commit)
                .await
                .map_err(|e| failed("writing", e))?;
            buf.begin(at);
            if let Some(off) = done {
                committed = off;
                entry.offset.store(off, Ordering::Release);
            }
        }
    }
    if let Some(off) = pipe.wait().await.map_err(|e| failed("writing", e))? {
        committed = off;
        entry.offset.store(off, Ordering::Release);
    }
    // A checksummed chunk is all or nothing; any other keeps what arrived before a refusal or
    // a cut (a client resumes from it).
    let keep = match (&expected, hasher) {
        (Some(e), Some(h)) if refused.is_none() && !cut_short => {
            if e.matches(h) {
                true
            } else {
                up.metrics.rejected.with_label_values(&["checksum"]).inc();
                refused = Some(TusError::new(
                    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                    "Upload-Checksum does not match the body; the chunk was discarded",
                ));
                false
            }
        }
        (Some(_), _) => false,
        (None, _) => true,
    };
    if keep && received > committed {
        (buf, _) = pipe
            .submit(buf, true)
            .await
            .map_err(|e| failed("writing", e))?;
        if let Some(off) = pipe.wait().await.map_err(|e| failed("writing", e))? {
            committed = off;
            entry.offset.store(off, Ordering::Release);
        }
    }
    drop(buf);
    if committed != received || !keep {
        // Cut what was written past the durable offset (it was never acknowledged).
        if let Some((mut appender, _)) = pipe.idle.take() {
            let h = held.clone();
            blocking(move || {
                let _h = h;
                appender.discard_uncommitted()
            })
            .await
            .map_err(|e| failed("discarding the chunk of", e))?;
        }
    }
    drop(pipe);
    if committed == length {
        up.complete(id, entry).await;
    }
    drop(held);
    match refused {
        Some(e) => Err(e),
        None => Ok(committed),
    }
}

/// A write in flight on the blocking pool; it returns the offset it made durable, if it commits.
type Busy = JoinHandle<io::Result<(Appender, Block, Option<u64>)>>;

/// The writes of one body: one in flight on the blocking pool while the next buffer fills, so
/// receiving overlaps writing and syncing. Two buffers of [`WRITE_BUF`] bytes, reused.
struct Pipeline {
    /// The appender and the spare buffer, while no write is in flight.
    idle: Option<(Appender, Block)>,
    busy: Option<Busy>,
    /// The upload's lock, held by every write (it outlives a request that goes away).
    held: Arc<Held>,
}

impl Pipeline {
    /// Waits for the write in flight; returns the offset it made durable, if any.
    async fn wait(&mut self) -> io::Result<Option<u64>> {
        let Some(job) = self.busy.take() else {
            return Ok(None);
        };
        let (appender, buf, done) = job.await.map_err(io::Error::other)??;
        self.idle = Some((appender, buf));
        Ok(done)
    }

    /// Waits for the write in flight, then starts writing `buf` (and, with `commit`, making
    /// every byte written durable). Returns the spare buffer (empty) and the offset the
    /// previous write made durable, if any.
    async fn submit(&mut self, buf: Block, commit: bool) -> io::Result<(Block, Option<u64>)> {
        let done = self.wait().await?;
        let (mut appender, spare) = self
            .idle
            .take()
            .ok_or_else(|| io::Error::other("the appender was lost by a failed write"))?;
        let held = self.held.clone();
        let job = spawn_blocking(move || {
            let _held = held;
            appender.write(&buf)?;
            let done = if commit {
                Some(appender.commit()?)
            } else {
                None
            };
            Ok((appender, buf, done))
        });
        self.busy = Some(job);
        Ok((spare, done))
    }
}
