//! tus `expiration`: an incomplete upload expires `upload_expiration_s` after its creation
//! (`Upload-Expires`, an RFC 7231 date). Then it answers 410 and its bytes are deleted, by the
//! request that finds it expired or by the sweeper, whichever comes first. The sweeper also
//! completes uploads whose last byte is durable but whose completion was interrupted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::store::UploadState;
use super::{now_s, Uploads};

/// `secs` (Unix) as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// How often the sweeper runs: a quarter of the expiration, 1–60 s.
pub fn sweep_interval(expiration: Duration) -> Duration {
    Duration::from_secs((expiration.as_secs() / 4).clamp(1, 60))
}

/// Runs [`sweep`] forever.
pub(super) async fn sweeper(up: Arc<Uploads>) {
    let every = sweep_interval(up.expiration);
    loop {
        actix_web::rt::time::sleep(every).await;
        sweep(&up).await;
    }
}

/// One pass: deletes expired incomplete uploads, completes fully received ones, finishes the
/// deletions of videos (`crate::videos`). Uploads a request holds are left for the next pass.
/// On a shared data directory it covers the uploads other nodes created too (a node that
/// created an upload may be gone for good).
pub(super) async fn sweep(up: &Arc<Uploads>) {
    crate::videos::sweep_deletions(up).await;
    if let Err(e) = up.refresh_all().await {
        tracing::warn!(target: "service", error = %e, "cannot read the uploads for the sweep");
    }
    let now = now_s();
    for (id, e) in up.entries() {
        let (state, length, expires) = {
            let i = e.info();
            (i.state, i.length, i.expires)
        };
        if state == UploadState::Complete {
            continue;
        }
        let full = e.offset() == length;
        if !full && now < expires {
            continue;
        }
        let Ok(Some(_held)) = up.locker.try_lock(&id).await else {
            continue;
        };
        // Another node sharing the directory may have written, completed or deleted it.
        let Ok(e) = up.locked_entry(&id, e).await else {
            continue;
        };
        let (state, full, expires) = {
            let i = e.info();
            (i.state, e.offset() == i.length, i.expires)
        };
        if state == UploadState::Complete || (!full && now < expires) {
            continue;
        }
        if full {
            up.complete(&id, &e).await;
        } else {
            up.remove(&id, "expired").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_intervals() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            sweep_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(86_400)),
            Duration::from_secs(60)
        );
    }
}
