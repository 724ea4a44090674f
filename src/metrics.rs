//! What `GET /metrics` shows, in the Prometheus (OpenMetrics) text format. Runs are counted as
//! they finish; the rest (load, pools, restarts, brokered requests) is read from the supervisor
//! and the broker by a collector as each scrape encodes it, so those keep one source of truth
//! and no copy of them is kept here to fall behind or overshoot.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

use crate::supervisor::Supervisor;

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
}

type HistogramMaker = fn() -> Histogram;

impl Metrics {
    /// The run counters, and the collector that reads `supervisor` at each scrape.
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        // 1 ms to about 65 s: from a trivial run to the longest time limit.
        let histogram: HistogramMaker = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let runs = Family::default();
        let durations = Family::new_with_constructor(histogram);
        let mut registry = Registry::with_prefix("sandlot");
        registry.register(
            "runs",
            "Run requests, by language, API route and outcome (ok, the error kind, busy when the queue was full, abandoned when the client left first)",
            runs.clone(),
        );
        registry.register(
            "run_duration_seconds",
            "How long runs took, as the server measures them (from the job's hand-over to the child until its end; queueing excluded)",
            durations.clone(),
        );
        registry.register_collector(Box::new(ServerFigures(supervisor)));
        Self {
            registry,
            runs,
            durations,
        }
    }

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

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// The figures the supervisor and the broker keep, encoded as they are at the scrape.
struct ServerFigures(Arc<Supervisor>);

impl std::fmt::Debug for ServerFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerFigures")
    }
}

impl Collector for ServerFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let load = self.0.load();
        for (name, help, value) in [
            (
                "queue_waiting",
                "Requests waiting for a worker",
                load.waiting,
            ),
            (
                "workers_busy",
                "Runs computing now (holding a core)",
                load.busy,
            ),
            (
                "workers",
                "Runs that may compute at once (--workers)",
                load.workers,
            ),
            (
                "runs_alive",
                "Runs admitted, those waiting in a sleep or on the broker included",
                load.alive,
            ),
            (
                "max_children",
                "Runs that may be alive at once (--max-children)",
                load.max_children,
            ),
        ] {
            one(&mut encoder, name, help, &ConstGauge::new(value as i64))?;
        }
        let zygotes = self.0.all_status();
        let restarts = zygotes.iter().map(|z| {
            (
                KindLabel { kind: z.kind },
                ConstCounter::new(u64::from(z.restarts)),
            )
        });
        family(
            &mut encoder,
            "zygote_restarts",
            "Times a zygote died and was started again, by kind",
            restarts,
        )?;
        let pools = zygotes
            .iter()
            .map(|z| (KindLabel { kind: z.kind }, ConstGauge::new(z.pool as i64)));
        let runs = self
            .0
            .runs()
            .counts()
            .map(|(kind, count)| (KindLabel { kind: kind.name() }, ConstCounter::new(count)));
        family(
            &mut encoder,
            "zygote_runs",
            "Runs whose child got its job, by the kind of zygote that forked it (javascript: the lean one; javascript-modules: the npm modules evaluated; javascript-intl: Intl warm too)",
            runs,
        )?;
        family(
            &mut encoder,
            "prefork_pool_size",
            "Children forked and jailed ahead of demand, waiting for a job, by zygote kind",
            pools,
        )?;
        let tally = &self.0.broker().tally;
        let requests = [
            ("ok", &tally.ok),
            ("denied", &tally.denied),
            ("failed", &tally.failed),
        ]
        .map(|(outcome, count)| {
            (
                OutcomeLabel { outcome },
                ConstCounter::new(count.load(Relaxed)),
            )
        });
        family(
            &mut encoder,
            "broker_requests",
            "Brokered HTTP requests (SystemHelper.httpRequest, fetch) by outcome: ok, denied, failed",
            requests,
        )
    }
}

/// One metric without labels.
fn one<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &M,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, None, M::TYPE)?)
}

/// One metric with a sample per label set.
fn family<L: EncodeLabelSet, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}
