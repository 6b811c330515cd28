//! Metrics (Prometheus text format) and the per-request context used by the JSON access log.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Origin metrics (other crates add theirs with [`Metrics::register`]).
pub struct Metrics {
    registry: Registry,
    /// Requests by status class (2xx…) and file kind.
    pub requests: IntCounterVec,
    /// Body bytes handed to connections, by file kind.
    pub bytes_sent: IntCounterVec,
    /// Request latency (to response head) by file kind.
    pub latency: HistogramVec,
    /// Requests being handled.
    pub in_flight: IntGauge,
    /// Requests refused with 429.
    pub rate_limited: IntCounter,
    /// Hot-cache hits.
    pub cache_hits: IntCounter,
    /// Hot-cache misses.
    pub cache_misses: IntCounter,
    /// The per-kind series, resolved once (a label lookup hashes its values on every call).
    per_kind: Vec<PerKind>,
}

/// `kind` label values.
const KINDS: [&str; 4] = ["manifest", "segment", "init", "other"];
/// `status` label values.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The series of one file kind.
struct PerKind {
    kind: &'static str,
    requests: [IntCounter; 5],
    latency: prometheus::Histogram,
    sent: Arc<dyn crate::body::SentCounter>,
}

impl Metrics {
    /// Creates the metrics with a constant `node` label (host name or configured).
    pub fn new(node: &str) -> Self {
        let registry = Registry::new_custom(
            Some("abr".into()),
            Some([("node".to_string(), node.to_string())].into()),
        )
        .unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by status class and file kind",
            ),
            &["status", "kind"],
        )
        .expect("static metric definition");
        let bytes_sent = IntCounterVec::new(
            Opts::new(
                "http_sent_bytes_total",
                "Response body bytes sent by file kind",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to response head by file kind",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["kind"],
        )
        .expect("static metric definition");
        let in_flight = IntGauge::new("http_in_flight_requests", "Requests being handled")
            .expect("static metric");
        let rate_limited = IntCounter::new("http_rate_limited_total", "Requests refused with 429")
            .expect("static metric");
        let cache_hits =
            IntCounter::new("cache_hits_total", "Hot-file cache hits").expect("static metric");
        let cache_misses =
            IntCounter::new("cache_misses_total", "Hot-file cache misses").expect("static metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(bytes_sent.clone()),
            Box::new(latency.clone()),
            Box::new(in_flight.clone()),
            Box::new(rate_limited.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
        ] {
            let _ = registry.register(c);
        }
        let per_kind = KINDS
            .iter()
            .map(|&kind| PerKind {
                kind,
                requests: CLASSES.map(|c| requests.with_label_values(&[c, kind])),
                latency: latency.with_label_values(&[kind]),
                sent: Arc::new(KindCounter(bytes_sent.with_label_values(&[kind]))),
            })
            .collect();
        Metrics {
            per_kind,
            registry,
            requests,
            bytes_sent,
            latency,
            in_flight,
            rate_limited,
            cache_hits,
            cache_misses,
        }
    }

    /// Adds another crate's metric to the exposition (with the `abr_` prefix and `node` label).
    pub fn register(
        &self,
        c: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(c)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    fn kind(&self, kind: &str) -> Option<&PerKind> {
        self.per_kind.iter().find(|k| k.kind == kind)
    }

    /// A counter of body bytes for one file kind.
    pub fn sent_counter(&self, kind: &'static str) -> Arc<dyn crate::body::SentCounter> {
        match self.kind(kind) {
            Some(k) => k.sent.clone(),
            None => Arc::new(KindCounter(self.bytes_sent.with_label_values(&[kind]))),
        }
    }

    /// Counts a finished request: its status class, kind and latency.
    pub fn record(&self, status: u16, kind: &str, seconds: f64) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        match self.kind(kind) {
            Some(k) => {
                k.requests[class].inc();
                k.latency.observe(seconds);
            }
            None => {
                self.requests
                    .with_label_values(&[CLASSES[class], kind])
                    .inc();
                self.latency.with_label_values(&[kind]).observe(seconds);
            }
        }
    }
}

struct KindCounter(prometheus::IntCounter);

impl crate::body::SentCounter for KindCounter {
    fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
}

/// Per-request facts shared between the middleware and handlers (request extensions).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Client address (from X-Forwarded-For when the peer is a trusted proxy).
    pub client: std::net::IpAddr,
    /// What was requested, for metrics and logs (set by the handler that knows).
    pub kind: std::cell::Cell<&'static str>,
}

/// Host name for the node label.
pub fn node_name() -> String {
    std::env::var("ABR_NODE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "node".into())
        })
}
