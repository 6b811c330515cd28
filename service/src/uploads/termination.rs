//! tus `termination`: DELETE removes an upload and its bytes (204); later requests get 404.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use super::{core, tus_response, TusError, Uploads};

/// DELETE of upload `id` (423 while a PATCH writes it).
pub(super) async fn delete(
    req: &HttpRequest,
    up: &Arc<Uploads>,
    id: &str,
) -> Result<HttpResponse, TusError> {
    let p = core::authenticate(req, up)?;
    up.lookup(id, &p.name).await?;
    let held = core::lock(up, id).await?;
    up.remove(id, "terminated").await;
    drop(held);
    Ok(tus_response(StatusCode::NO_CONTENT).finish())
}
