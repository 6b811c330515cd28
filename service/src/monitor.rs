//! `abr monitor`: follows playback events on the cluster's Redis channel and shows live viewers
//! per package, reconnecting by itself when Redis goes away.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt;

use crate::store::redis::{viewers_key, PACKAGES_KEY};
use crate::store::{now_ms, Event, EVENTS_CHANNEL};

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Redis URL.
    pub redis: String,
    /// A viewer counts as live for this long after its last event (match the nodes' setting).
    pub window: Duration,
    /// Period of the live-viewer summary.
    pub interval: Duration,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Exit after this many events (0 = run until interrupted).
    pub max_events: u64,
}

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Unusable Redis URL.
    #[error("redis URL: {0}")]
    Url(String),
    /// Runtime setup failed.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Live viewers per package, read from Redis (the same window as the nodes use).
async fn live(
    conn: &mut redis::aio::MultiplexedConnection,
    window: Duration,
) -> redis::RedisResult<BTreeMap<String, u64>> {
    let packages: Vec<String> = redis::cmd("SMEMBERS")
        .arg(PACKAGES_KEY)
        .query_async(conn)
        .await?;
    let since = now_ms().saturating_sub(window.as_millis() as u64);
    let mut out = BTreeMap::new();
    for p in packages {
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(viewers_key(&p))
            .arg(format!("({since}"))
            .arg("+inf")
            .query_async(conn)
            .await?;
        out.insert(p, n);
    }
    Ok(out)
}

fn print_event(json: bool, raw: &str) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{raw}");
    } else {
        match serde_json::from_str::<Event>(raw) {
            Ok(e) => {
                let p = &e.position;
                let _ = writeln!(
                    out,
                    "{}  {:<8} viewer {}…  {:<16} {:>9.1} s  {:<7} {:<10} live={}",
                    origin::conditional::http_date(
                        std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(p.updated_ms)
                    ),
                    p.node,
                    &e.viewer[..e.viewer.len().min(8)],
                    p.package,
                    p.position_s,
                    if p.paused { "paused" } else { "playing" },
                    p.rendition.as_deref().unwrap_or("-"),
                    e.viewers
                );
            }
            Err(_) => {
                let _ = writeln!(out, "(unparsed event) {raw}");
            }
        }
    }
    let _ = out.flush();
}

fn print_live(json: bool, window: Duration, live: &BTreeMap<String, u64>) {
    let mut out = std::io::stdout().lock();
    if json {
        let v =
            serde_json::json!({ "live": live, "window_s": window.as_secs(), "at_ms": now_ms() });
        let _ = writeln!(out, "{v}");
    } else if live.is_empty() {
        let _ = writeln!(out, "live viewers: none");
    } else {
        let list: Vec<String> = live.iter().map(|(p, n)| format!("{p}={n}")).collect();
        let _ = writeln!(
            out,
            "live viewers (last {} s): {}",
            window.as_secs(),
            list.join("  ")
        );
    }
    let _ = out.flush();
}

/// Runs until interrupted (or `max_events` events were shown).
pub fn run(o: MonitorOptions) -> Result<(), MonitorError> {
    let client =
        redis::Client::open(o.redis.as_str()).map_err(|e| MonitorError::Url(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut seen = 0u64;
        let mut down_logged = false;
        loop {
            let session = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(EVENTS_CHANNEL).await?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                Ok::<_, redis::RedisError>((ps, conn.clone(), live(&mut conn, o.window).await?))
            };
            let (ps, mut conn, snapshot) = match session.await {
                Ok(s) => s,
                Err(e) => {
                    if !down_logged {
                        eprintln!("abr monitor: redis {}: {e}; retrying", o.redis);
                        down_logged = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if std::mem::take(&mut down_logged) {
                eprintln!("abr monitor: redis connected");
            }
            print_live(o.json, o.window, &snapshot);
            let mut msgs = ps.into_on_message();
            let mut tick = tokio::time::interval(o.interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    m = msgs.next() => match m {
                        Some(m) => {
                            if let Ok(raw) = m.get_payload::<String>() {
                                print_event(o.json, &raw);
                                seen += 1;
                                if o.max_events > 0 && seen >= o.max_events {
                                    return Ok(());
                                }
                            }
                        }
                        None => {
                            eprintln!("abr monitor: redis connection lost; reconnecting");
                            down_logged = true;
                            break;
                        }
                    },
                    _ = tick.tick() => {
                        if let Ok(l) = live(&mut conn, o.window).await {
                            print_live(o.json, o.window, &l);
                        }
                    }
                }
            }
        }
    })
}
