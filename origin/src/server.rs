//! Starting, running and stopping the origin: listeners (plain and TLS, both assembled from
//! actix-server and actix-http parts around wrapped connections), signals
//! (SIGTERM/SIGINT: readiness off → grace period → stop accepting → drain; SIGHUP: reload TLS).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{Extensions, HttpServiceBuilder, Protocol, Request};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_tls::accept::TlsError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::AppConfig;
use actix_web::{middleware, web, App};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::error::OriginError;
use crate::extension::Extension;
use crate::head_deadline::HeadTimed;
use crate::sendfile::SendfileStream;
use crate::state::State;

/// Time for the actix acceptor to take a pause into account (it may still handle a readiness
/// event polled with the pause request) before the listening socket is shut down.
const ACCEPTOR_PAUSE: Duration = Duration::from_millis(20);

/// Whether the kernel moves connections queued on a closing SO_REUSEPORT listener to another
/// listener of its group (Linux ≥ 5.14, `sysctl net.ipv4.tcp_migrate_req=1`).
fn tcp_migrate_req() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

/// Time between closing the listener and the graceful stop of the workers (see `serve`).
const SETTLE: Duration = Duration::from_millis(250);

/// How long a client gets to close its side after the response (actix's client disconnect
/// timeout).
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP settings of every listener (those `HttpServer` would apply).
#[derive(Clone, Copy)]
struct HttpSettings {
    keep_alive: Duration,
    request_timeout: Duration,
}

impl HttpSettings {
    fn new(config: &Config) -> Self {
        HttpSettings {
            keep_alive: config.keep_alive(),
            request_timeout: config.header_timeout(),
        }
    }

    /// The follow-up request-head deadline of the connection wrappers (none when disabled).
    fn head_timeout(self) -> Option<Duration> {
        (!self.request_timeout.is_zero()).then_some(self.request_timeout)
    }

    /// An HTTP service builder with these settings, for connections to `addr`.
    fn builder<T, S>(
        self,
        addr: std::net::SocketAddr,
        shutdown: &actix_server::GracefulShutdownSignal,
        state: &web::Data<State>,
    ) -> HttpServiceBuilder<T, S>
    where
        S: ServiceFactory<Request, Config = ()>,
        S::Error: Into<actix_http::Response<BoxBody>> + 'static,
        S::InitError: std::fmt::Debug,
        <S::Service as Service<Request>>::Future: 'static,
    {
        let (signal, state) = (shutdown.clone(), state.clone());
        HttpServiceBuilder::default()
            // As HttpServer does (a hidden actix-http API it uses too; pinned by Cargo.lock):
            // idle keep-alive connections close at once on a graceful stop.
            .graceful_shutdown_signal(move || {
                let signal = signal.clone();
                StopNotified {
                    notified: Box::pin(async move { signal.notified().await }),
                    state: state.clone(),
                    registered: false,
                }
            })
            .keep_alive(self.keep_alive)
            .client_request_timeout(self.request_timeout)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .local_addr(addr)
    }
}

/// A connection's graceful-stop notification. actix-http polls it on every wake of the
/// connection, and tokio's `Notified` takes the lock of its `Notify` (one for all workers) on
/// every poll. This one polls it once to register and then again only when readiness is off
/// (the stop is near): the registered waker is the connection task's, so it is woken either way.
struct StopNotified<F> {
    notified: Pin<Box<F>>,
    state: web::Data<State>,
    registered: bool,
}

impl<F: Future<Output = ()>> Future for StopNotified<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered && self.state.ready.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        self.registered = true;
        self.notified.as_mut().poll(cx)
    }
}

/// A TLS connection as the handlers' stack sees it.
type TlsConn = HeadTimed<TlsStream<TcpStream>>;

/// Adds a listener serving `app`, with the settings `HttpServer` would apply.
///
/// - Plain (`tls` none): HTTP/1.1 on connections wrapped in a [`SendfileStream`].
/// - TLS: HTTP/2 or HTTP/1.1 by ALPN; HTTP/1.1 connections get the follow-up request-head
///   deadline ([`HeadTimed`]), HTTP/2 has its own framing and keep-alive pings. No sendfile:
///   the bytes are encrypted in user space.
fn add_listener<F, I, S, B>(
    builder: actix_server::ServerBuilder,
    listener: std::net::TcpListener,
    settings: HttpSettings,
    app: F,
    shutdown: actix_server::GracefulShutdownSignal,
    state: web::Data<State>,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<actix_server::ServerBuilder>
where
    F: Fn() -> I + Clone + Send + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let head_timeout = settings.head_timeout();
    let handlers = move || {
        map_config(
            app().into_factory().map_err(|e| e.into().error_response()),
            |_| AppConfig::default(),
        )
    };
    let Some(tls) = tls else {
        return builder.listen(format!("abr-{addr}"), listener, move || {
            let http = settings
                .builder::<SendfileStream, _>(addr, &shutdown, &state)
                .on_connect_ext(move |io: &SendfileStream, ext: &mut Extensions| {
                    ext.insert(io.splices());
                    ext.insert(io.head_clock());
                    ext.insert(LocalAddr(addr));
                })
                .h1(handlers());
            fn_service(move |io: TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, DispatchError>((SendfileStream::new(io, head_timeout), peer))
            })
            .and_then(http)
        });
    };
    builder.listen(format!("abr-tls-{addr}"), listener, move || {
        let http = settings
            .builder::<TlsConn, _>(addr, &shutdown, &state)
            .on_connect_ext(move |io: &TlsConn, ext: &mut Extensions| {
                ext.insert(io.clock());
                ext.insert(LocalAddr(addr));
            })
            .finish(handlers());
        // The handshake is bounded by actix-tls's default timeout (3 s), as under HttpServer.
        Acceptor::new(tls.clone())
            .map_err(|e| match e {
                TlsError::Timeout => DispatchError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                )),
                TlsError::Tls(e) => DispatchError::Io(e),
                TlsError::Service(never) => match never {},
            })
            .and_then(fn_service(move |io: TlsStream<TcpStream>| async move {
                let (tcp, session) = io.get_ref();
                let peer = tcp.peer_addr().ok();
                let conn = if session.alpn_protocol() == Some(b"h2".as_slice()) {
                    (HeadTimed::new(io, None), Protocol::Http2, peer)
                } else {
                    (HeadTimed::new(io, head_timeout), Protocol::Http1, peer)
                };
                Ok::<_, DispatchError>(conn)
            }))
            .and_then(http)
    })
}

/// Runs the origin until SIGTERM/SIGINT, then drains and returns. `extend` is called once, on
/// the server's runtime (it may spawn tasks) before the listeners start, with the origin's state:
/// it returns the routes and the shared rate limit another crate adds ([`Extension::default`]
/// for none).
pub fn run<F>(config: Config, extend: F) -> Result<(), OriginError>
where
    F: FnOnce(&State) -> Result<Extension, OriginError>,
{
    config.validate()?;
    actix_web::rt::System::new().block_on(serve(config, extend))
}

/// Marks which listening address a plain-HTTP connection came in on (connection data): the
/// hand-built listeners have a default `AppConfig`, so `app_config().local_addr()` is not it.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub std::net::SocketAddr);

async fn serve<F>(config: Config, extend: F) -> Result<(), OriginError>
where
    F: FnOnce(&State) -> Result<Extension, OriginError>,
{
    let mut state = State::new(config.clone())?;
    let extension = extend(&state)?;
    state.extension_prefixes = extension.prefixes;
    state.extension_paths = extension.paths;
    state.shared_limit = extension.shared_limit;
    let state = web::Data::new(state);
    let workers = config.worker_count();
    let per_worker = config.max_connections.div_ceil(workers).max(1);
    let app_state = state.clone();
    let extra = extension.configure;
    let app = move || {
        let extra = extra.clone();
        App::new()
            .app_data(app_state.clone())
            .wrap(middleware::from_fn(crate::routes::middleware))
            .configure(move |cfg| {
                if let Some(f) = &extra {
                    f(cfg);
                }
            })
            .configure(crate::routes::configure)
    };
    let io = |context: String| move |source| OriginError::Io { context, source };
    let listener = crate::listen::bind(config.listen)?;
    // Handles on the listening sockets, to stop listening at the end of the grace period.
    let mut listening = vec![listener
        .try_clone()
        .map_err(io(format!("listen on {}", config.listen)))?];
    let admin_listener = match config.admin_listen {
        Some(admin) => {
            let l = crate::listen::bind(admin)?;
            listening.push(
                l.try_clone()
                    .map_err(io(format!("admin listen on {admin}")))?,
            );
            Some(l)
        }
        None => None,
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::Reloadable::new(c, k)?),
        _ => None,
    };
    let mut builder = actix_server::Server::build()
        .workers(workers)
        .max_concurrent_connections(per_worker)
        .shutdown_timeout(config.drain_timeout().as_secs().max(1))
        .disable_signals();
    let shutdown = builder.graceful_shutdown_signal();
    let http = HttpSettings::new(&config);
    builder = add_listener(
        builder,
        listener,
        http,
        app.clone(),
        shutdown.clone(),
        state.clone(),
        tls.as_ref().map(|t| t.server_config()),
    )
    .map_err(io(format!("listen on {}", config.listen)))?;
    if let Some(l) = admin_listener {
        builder = add_listener(builder, l, http, app, shutdown, state.clone(), None)
            .map_err(io("admin listen".to_string()))?;
    }
    let running = builder.run();
    let handle = running.handle();
    tracing::info!(
        listen = %config.listen,
        admin = ?config.admin_listen,
        tls = tls.is_some(),
        root = %state.root.path().display(),
        workers,
        node = %state.node,
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
        // Stop accepting, then stop listening in the kernel: the socket leaves the SO_REUSEPORT
        // group at once (new connections go to the other instance) and connections still queued
        // on it move to another listener of the group when net.ipv4.tcp_migrate_req=1, else
        // they are reset (as on close). The actix acceptor is paused first so that it does not
        // try to accept on the closed socket (an error in the log); when queued connections
        // would be reset, the socket is closed at once rather than letting them pile up.
        handle.pause().await;
        if tcp_migrate_req() {
            actix_web::rt::time::sleep(ACCEPTOR_PAUSE).await;
        } else {
            tracing::info!(
                "shutdown: net.ipv4.tcp_migrate_req is off, connections queued on the listener are reset"
            );
        }
        for l in &listening {
            if let Err(e) = socket2::SockRef::from(l).shutdown(std::net::Shutdown::Read) {
                tracing::warn!("shutdown: cannot stop listening: {e}");
            }
        }
        tracing::info!("shutdown: listener closed, waiting for in-flight responses");
        // A graceful stop closes every connection that has no request in progress and drops
        // accepted connections a worker has not started yet: give the connections accepted just
        // before the listener closed the time to be started and to read their request.
        actix_web::rt::time::sleep(SETTLE).await;
        handle.stop(true).await;
        drop(listening);
    });

    running.await.map_err(io("server".into()))?;
    tracing::info!("abr serve stopped");
    Ok(())
}
