//! Starting, running and stopping the origin: listeners, actix-web settings, signals
//! (SIGTERM/SIGINT: readiness off → grace period → stop accepting → drain; SIGHUP: reload TLS).

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpServer};

use crate::config::Config;
use crate::error::OriginError;
use crate::state::State;

/// Runs the origin until SIGTERM/SIGINT, then drains and returns.
pub fn run(config: Config) -> Result<(), OriginError> {
    config.validate()?;
    actix_web::rt::System::new().block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), OriginError> {
    let state = web::Data::new(State::new(config.clone())?);
    let workers = config.worker_count();
    let per_worker = config.max_connections.div_ceil(workers).max(1);
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .wrap(middleware::from_fn(crate::routes::middleware))
            .configure(crate::routes::configure)
    })
    .workers(workers)
    .max_connections(per_worker)
    .max_connection_rate(256)
    .client_request_timeout(config.header_timeout())
    .client_disconnect_timeout(Duration::from_secs(2))
    .keep_alive(config.keep_alive())
    .shutdown_timeout(config.drain_timeout().as_secs().max(1))
    .disable_signals();
    let io = |context: String| move |source| OriginError::Io { context, source };
    let listener = crate::listen::bind(config.listen)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::Reloadable::new(c, k)?),
        _ => None,
    };
    server = match &tls {
        Some(t) => server
            .listen_rustls_0_23(listener, t.server_config())
            .map_err(io(format!("listen (TLS) on {}", config.listen)))?,
        None => server
            .listen(listener)
            .map_err(io(format!("listen on {}", config.listen)))?,
    };
    if let Some(admin) = config.admin_listen {
        server = server
            .listen(crate::listen::bind(admin)?)
            .map_err(io(format!("admin listen on {admin}")))?;
    }
    let running = server.run();
    let handle = running.handle();
    tracing::info!(
        listen = %config.listen,
        admin = ?config.admin_listen,
        tls = tls.is_some(),
        root = %state.root.display(),
        workers,
        "abr serve started"
    );

    // Rate-limiter housekeeping keeps its memory bounded by active clients.
    let hk = state.clone();
    actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(Duration::from_secs(60)).await;
            if let Some(l) = &hk.limiter {
                l.housekeeping();
            }
        }
    });

    let sig_state = state.clone();
    let grace = config.shutdown_grace();
    actix_web::rt::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match &tls {
                    Some(t) => match t.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => tracing::error!("TLS reload failed, keeping the old certificate: {e}"),
                    },
                    None => tracing::info!("SIGHUP ignored: no TLS configured"),
                },
            }
        }
        sig_state.ready.store(false, Ordering::Relaxed);
        tracing::info!(
            grace_s = grace.as_secs_f64(),
            "shutdown: readiness off, draining"
        );
        actix_web::rt::time::sleep(grace).await;
        tracing::info!("shutdown: listener closed, waiting for in-flight responses");
        handle.stop(true).await;
    });

    running.await.map_err(io("server".into()))?;
    tracing::info!("abr serve stopped");
    Ok(())
}
