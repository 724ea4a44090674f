//! What `GET /metrics` shows, in the Prometheus (OpenMetrics) text format. Runs are counted as
//! they finish; the rest (load, pools, restarts, brokered requests) is read from the supervisor
//! and the broker when scraped, so those keep one source of truth.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::broker::BrokerTally;
use crate::supervisor::{Load, ZygoteStatus};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    language: &'static str,
    route: &'static str,
    /// `ok`, the error kind, `busy` or `abandoned`.
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabel {
    language: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    durations: Family<LanguageLabel, Histogram, HistogramMaker>,
    queue_waiting: Gauge,
    workers_busy: Gauge,
    workers: Gauge,
    zygote_restarts: Family<KindLabel, Counter>,
    pool_size: Family<KindLabel, Gauge>,
    broker_requests: Family<OutcomeLabel, Counter>,
}

type HistogramMaker = fn() -> Histogram;

impl Default for Metrics {
    fn default() -> Self {
        // 1 ms to about 65 s: from a trivial run to the longest time limit.
        let histogram: HistogramMaker = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let metrics = Self {
            registry: Registry::with_prefix("sandlot"),
            runs: Family::default(),
            durations: Family::new_with_constructor(histogram),
            queue_waiting: Gauge::default(),
            workers_busy: Gauge::default(),
            workers: Gauge::default(),
            zygote_restarts: Family::default(),
            pool_size: Family::default(),
            broker_requests: Family::default(),
        };
        let mut registry = Registry::with_prefix("sandlot");
        registry.register(
            "runs",
            "Run requests, by language, API route and outcome (ok, the error kind, busy when the queue was full, abandoned when the client left first)",
            metrics.runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "How long runs took, as the server measures them (from the job's hand-over to the child until its end; queueing excluded)",
            metrics.durations.clone(),
        );
        registry.register(
            "queue_waiting",
            "Requests waiting for a worker",
            metrics.queue_waiting.clone(),
        );
        registry.register(
            "workers_busy",
            "Runs executing now",
            metrics.workers_busy.clone(),
        );
        registry.register(
            "workers",
            "Runs that may execute at once (--workers)",
            metrics.workers.clone(),
        );
        registry.register(
            "zygote_restarts",
            "Times a zygote died and was started again, by kind",
            metrics.zygote_restarts.clone(),
        );
        registry.register(
            "prefork_pool_size",
            "Children forked and jailed ahead of demand, waiting for a job, by zygote kind",
            metrics.pool_size.clone(),
        );
        registry.register(
            "broker_requests",
            "Brokered HTTP requests (SystemHelper.httpRequest) by outcome: ok, denied, failed",
            metrics.broker_requests.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// Counts one answered request for a run, and the run's time if it ran.
    pub fn record_run(
        &self,
        language: &'static str,
        route: &'static str,
        outcome: &'static str,
        seconds: Option<f64>,
    ) {
        self.runs
            .get_or_create(&RunLabels {
                language,
                route,
                outcome,
            })
            .inc();
        if let Some(seconds) = seconds {
            self.durations
                .get_or_create(&LanguageLabel { language })
                .observe(seconds);
        }
    }

    /// The text a scrape gets, with the figures read now.
    pub fn render(&self, load: Load, zygotes: &[ZygoteStatus], broker: &BrokerTally) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        self.queue_waiting.set(load.waiting as i64);
        self.workers_busy.set(load.busy as i64);
        self.workers.set(load.workers as i64);
        for zygote in zygotes {
            let kind = KindLabel { kind: zygote.kind };
            catch_up(
                &self.zygote_restarts.get_or_create(&kind),
                u64::from(zygote.restarts),
            );
            self.pool_size.get_or_create(&kind).set(zygote.pool as i64);
        }
        for (outcome, count) in [
            ("ok", &broker.ok),
            ("denied", &broker.denied),
            ("failed", &broker.failed),
        ] {
            let counter = self
                .broker_requests
                .get_or_create(&OutcomeLabel { outcome });
            catch_up(&counter, count.load(Relaxed));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Moves a counter up to a total kept elsewhere (it never goes down). One atomic step, so two
/// scrapes at once cannot both add the same difference.
fn catch_up(counter: &Counter, total: u64) {
    counter
        .inner()
        .fetch_max(total, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_at_once_never_overshoot_the_total() {
        let counter = Counter::<u64>::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for total in 0..=10_000 {
                        catch_up(&counter, total);
                    }
                });
            }
        });
        assert_eq!(counter.get(), 10_000);
    }
}
