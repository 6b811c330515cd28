//! tus `termination`: DELETE removes an upload and its bytes (204); later requests get 404. A
//! complete upload's packaging job is cancelled first (its source is going away).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::store::UploadState;
use super::{blocking, core, tus_response, TusError, Uploads};

/// DELETE of upload `id` (423 while a PATCH writes it).
pub(super) async fn delete(
    req: &HttpRequest,
    up: &Arc<Uploads>,
    id: &str,
) -> Result<HttpResponse, TusError> {
    let p = core::authenticate(req, up)?;
    let entry = up.lookup(id, &p.name).await?;
    let held = core::lock(up, id).await?;
    let entry = up.locked_entry(id, entry).await?;
    if entry.info().state == UploadState::Complete {
        let q = up.queue.clone();
        let owned = id.to_string();
        let cancelled = blocking(move || {
            q.cancel(&owned, "the upload was deleted")
                .map_err(std::io::Error::other)
        })
        .await;
        match cancelled {
            Ok(c) => {
                tracing::info!(target: "service", upload = id, video = id, cancelled = c, "job of a deleted upload")
            }
            Err(e) => {
                return Err(TusError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot cancel the upload's job: {e}"),
                ))
            }
        }
    }
    up.remove(id, "terminated").await;
    drop(held);
    Ok(tus_response(StatusCode::NO_CONTENT).finish())
}
