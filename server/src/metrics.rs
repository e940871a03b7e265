//! Process metrics, rendered as Prometheus text. Hand-rolled: a handful of
//! numbers the hub thread updates once per batch.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fieldnotes_sync::HubCounters;

use crate::limits::{Limit, LimitHits};

/// Upper bounds of the commit-latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    pub connections: AtomicU64,
    pub documents_loaded: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    /// Limits the sockets and routes enforce (the hub counts its own).
    pub limit_hits: LimitHits,
    /// Panics the hub thread caught outside a frame (a database job, a batch).
    pub hub_thread_panics: AtomicU64,
    /// Password hashes and verifications computed (each costs 19 MiB and a core for a moment).
    pub password_hashes: AtomicU64,
    hub: Mutex<HubCounters>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records how long one batch took to commit.
    pub fn observe_commit(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn set_hub_counters(&self, counters: &HubCounters) {
        let mut hub = self
            .hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        hub.clone_from(counters);
    }

    pub fn render(&self) -> String {
        let hub = self
            .hub
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "fieldnotes_connections",
            "gauge",
            "Open WebSocket connections.",
            self.connections.load(Ordering::Relaxed),
        );
        metric(
            "fieldnotes_documents_loaded",
            "gauge",
            "Documents held in memory.",
            self.documents_loaded.load(Ordering::Relaxed),
        );
        metric(
            "fieldnotes_messages_in_total",
            "counter",
            "Frames received.",
            hub.frames_in,
        );
        metric(
            "fieldnotes_bytes_in_total",
            "counter",
            "Bytes received in frames.",
            hub.bytes_in,
        );
        metric(
            "fieldnotes_messages_out_total",
            "counter",
            "Frames sent.",
            hub.frames_out,
        );
        metric(
            "fieldnotes_bytes_out_total",
            "counter",
            "Bytes sent in frames.",
            hub.bytes_out,
        );
        metric(
            "fieldnotes_protocol_errors_total",
            "counter",
            "Connections closed for bad input.",
            hub.protocol_errors,
        );
        metric(
            "fieldnotes_foreign_sender_dropped_total",
            "counter",
            "Messages dropped because senderId was not the socket's peer.",
            hub.foreign_sender_dropped,
        );
        metric(
            "fieldnotes_access_denied_total",
            "counter",
            "Messages refused by the access policy.",
            hub.access_denied,
        );
        metric(
            "fieldnotes_ephemeral_relayed_total",
            "counter",
            "Ephemeral messages relayed.",
            hub.ephemeral_relayed,
        );
        metric(
            "fieldnotes_ephemeral_duplicates_total",
            "counter",
            "Repeated ephemeral messages dropped.",
            hub.ephemeral_duplicates,
        );
        metric(
            "fieldnotes_change_chunks_stored_total",
            "counter",
            "Change chunks appended to storage.",
            hub.change_chunks_stored,
        );
        metric(
            "fieldnotes_compactions_total",
            "counter",
            "Documents compacted into one snapshot.",
            hub.compactions,
        );
        metric(
            "fieldnotes_documents_evicted_total",
            "counter",
            "Documents unloaded to keep memory bounded while peers still had them open.",
            hub.documents_evicted,
        );
        metric(
            "fieldnotes_documents_merged_from_store_total",
            "counter",
            "Documents in memory that took in changes another instance committed.",
            hub.documents_merged_from_store,
        );
        metric(
            "fieldnotes_documents_loaded_for_news_total",
            "counter",
            "Unloaded documents open on a socket, loaded because another instance committed to them.",
            hub.documents_loaded_for_news,
        );
        metric(
            "fieldnotes_storage_failures_total",
            "counter",
            "Batches that could not be stored.",
            hub.storage_failures,
        );
        metric(
            "fieldnotes_batches_committed_total",
            "counter",
            "Storage transactions committed.",
            hub.batches_committed,
        );
        metric(
            "fieldnotes_slow_consumer_closes_total",
            "counter",
            "Connections closed because they did not read fast enough.",
            self.slow_consumer_closes.load(Ordering::Relaxed),
        );

        metric(
            "fieldnotes_panics_caught_total",
            "counter",
            "Panics caught while handling a frame or a database job; each cost one connection or one request.",
            hub.panics_caught + self.hub_thread_panics.load(Ordering::Relaxed),
        );
        metric(
            "fieldnotes_automerge_panics_refused_total",
            "counter",
            "Sync messages automerge panicked on while applying them, refused as bad data.",
            hub.automerge_panics_refused,
        );
        metric(
            "fieldnotes_password_hashes_total",
            "counter",
            "Password hashes and verifications computed.",
            self.password_hashes.load(Ordering::Relaxed),
        );
        metric(
            "fieldnotes_pushes_denied_total",
            "counter",
            "Changes withheld from connections whose user may no longer see the document.",
            hub.pushes_denied,
        );
        let name = "fieldnotes_limit_hits_total";
        let _ = writeln!(
            out,
            "# HELP {name} Times a client reached one of the server's limits (see `fieldnotes serve --help`).\n# TYPE {name} counter"
        );
        let hub_limits = [
            ("sync_message", hub.sync_messages_refused),
            ("open_documents", hub.open_document_limit_hits),
            ("ephemeral_bytes", hub.ephemeral_too_large),
            ("ephemeral_per_second", hub.ephemeral_rate_limited),
        ];
        let shell_limits = Limit::ALL.map(|limit| (limit.label(), self.limit_hits.get(limit)));
        for (label, value) in hub_limits.into_iter().chain(shell_limits) {
            let _ = writeln!(out, "{name}{{limit=\"{label}\"}} {value}");
        }

        let name = "fieldnotes_storage_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to process and commit one batch of frames.\n# TYPE {name} histogram"
        );
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        out
    }
}
