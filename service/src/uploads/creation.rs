//! tus `creation` (POST with `Upload-Length` and `Upload-Metadata` → 201 and `Location`) and
//! `creation-with-upload` (the first bytes in the POST's body). Limits are checked before any
//! byte is stored: the largest upload (global and the principal's) and the principal's quota.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::core::{self, header_u64};
use super::store::{self, Info, UploadState};
use super::{blocking, expiration, metadata, now_s, tus_response, Entry, TusError, Uploads};

/// `/api/v1/uploads`: POST, OPTIONS.
pub async fn collection(
    req: HttpRequest,
    payload: web::Payload,
    up: web::Data<Uploads>,
) -> HttpResponse {
    let up = up.into_inner();
    let r = match *req.method() {
        Method::OPTIONS => {
            return super::cors::preflight(&req, &up).unwrap_or_else(|| core::options(&up))
        }
        Method::POST => create(&req, payload, &up).await,
        _ => return core::method_not_allowed("POST, OPTIONS"),
    };
    r.unwrap_or_else(|e| e.response())
}

async fn create(
    req: &HttpRequest,
    payload: web::Payload,
    up: &Arc<Uploads>,
) -> Result<HttpResponse, TusError> {
    let p = core::authenticate(req, up)?;
    let h = req.headers();
    let bad = |m: &str| TusError::new(StatusCode::BAD_REQUEST, m);
    if h.contains_key("Upload-Defer-Length") {
        return Err(bad(
            "Upload-Defer-Length is not supported: send Upload-Length",
        ));
    }
    let length = header_u64(h, "Upload-Length")?.ok_or_else(|| bad("Upload-Length is required"))?;
    let too_large = |m: String| TusError::new(StatusCode::PAYLOAD_TOO_LARGE, m);
    if length > up.max_size {
        return Err(too_large(format!(
            "Upload-Length {length} exceeds the largest upload, {} bytes",
            up.max_size
        )));
    }
    if let Some(max) = p.max_size.filter(|m| length > *m) {
        return Err(too_large(format!(
            "Upload-Length {length} exceeds {}'s largest upload, {max} bytes",
            p.name
        )));
    }
    let raw_meta = h
        .get("Upload-Metadata")
        .map(|v| v.to_str().map_err(|_| bad("Upload-Metadata is not ASCII")))
        .transpose()?;
    let meta = metadata::parse(raw_meta).map_err(|m| TusError::new(StatusCode::BAD_REQUEST, m))?;
    let content_length = header_u64(h, "Content-Length")?;
    let has_body =
        content_length.is_some_and(|n| n > 0) || h.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        core::check_content_type(req)?;
    }
    let expected = if has_body {
        core::expected_checksum(req)?
    } else {
        None
    };
    let id = store::new_id();
    let created = now_s();
    let info = Info {
        principal: p.name.clone(),
        length,
        metadata: raw_meta.unwrap_or_default().to_string(),
        name: meta.name,
        filename: meta.filename,
        created,
        expires: created.saturating_add(up.expiration.as_secs()),
        state: UploadState::Incomplete,
    };
    let entry = Arc::new(Entry::new(info.clone(), 0));
    {
        // The quota check and the reservation are one step, so concurrent creations cannot
        // overshoot it together.
        let mut index = up.index();
        // One video per package directory: a second `name` of the same principal would publish
        // over the first one's package (and a delete of either would remove both).
        if let Some((other, _)) = index.iter().find(|(_, e)| {
            let i = e.info();
            i.principal == p.name && i.name == info.name
        }) {
            return Err(TusError::new(
                StatusCode::CONFLICT,
                format!(
                    "{} already has a video named '{}' (id {other}): delete it first, or choose another name",
                    p.name, info.name
                ),
            ));
        }
        if let Some(quota) = p.quota {
            let used = Uploads::used_by(&index, &p.name);
            if used.saturating_add(length) > quota {
                return Err(too_large(format!(
                    "{}'s uploads hold {used} of {quota} bytes: {length} more do not fit",
                    p.name
                )));
            }
        }
        index.insert(id.clone(), entry.clone());
    }
    let store = up.store.clone();
    let owned = id.clone();
    if let Err(e) = blocking(move || store.create(&owned, &info)).await {
        up.index().remove(&id);
        return Err(TusError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "creating the upload failed",
        ))
        .inspect_err(|_| tracing::error!(target: "service", error = %e, "cannot create upload"));
    }
    up.metrics.in_progress.inc();
    tracing::info!(target: "service", upload = %id, video = %id, principal = %p.name, length, "upload created");
    let location = format!("/api/v1/uploads/{id}");
    let held = core::lock(up, &id).await?;
    if has_body {
        core::write_body(up, &id, &entry, held, payload, expected, content_length)
            .await
            .map_err(|mut e| {
                e.message = format!("{} (upload {location} was created)", e.message);
                e
            })?;
    } else if length == 0 {
        up.complete(&id, &entry).await;
        drop(held);
    }
    let mut b = tus_response(StatusCode::CREATED);
    b.insert_header((header::LOCATION, location))
        .insert_header(("Upload-Offset", entry.offset().to_string()));
    if entry.info().state == UploadState::Incomplete {
        b.insert_header((
            "Upload-Expires",
            expiration::http_date(entry.info().expires),
        ));
    }
    Ok(b.finish())
}
