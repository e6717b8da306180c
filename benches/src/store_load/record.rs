//! What a run measures: latency histograms (HDR, microseconds), operation and error counts, and
//! their rendering as a text table and as JSON.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::limits;

/// A latency histogram shared by a run's clients. Recording takes a lock for a few
/// nanoseconds; one histogram per client would cost ~200 KiB each at 1000 clients.
pub struct Latencies {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for Latencies {
    fn default() -> Self {
        let histogram = Histogram::new_with_bounds(
            1,
            limits::LATENCY_US_MAX,
            limits::LATENCY_SIGNIFICANT_DIGITS,
        )
        .expect("valid histogram bounds");
        Latencies { histogram: Mutex::new(histogram) }
    }
}

impl Latencies {
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // 1 µs is the floor: a sub-microsecond latency is recorded as 1.
        self.histogram.lock().expect("histogram lock").saturating_record(micros.max(1));
    }

    pub fn count(&self) -> u64 {
        self.histogram.lock().expect("histogram lock").len()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = self.histogram.lock().expect("histogram lock");
        let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        LatencySummary {
            count: h.len(),
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencySummary {
    pub fn to_json(self) -> Value {
        json!({
            "count": self.count, "mean_us": self.mean_us, "p50_us": self.p50_us,
            "p90_us": self.p90_us, "p99_us": self.p99_us, "p999_us": self.p999_us,
            "max_us": self.max_us,
        })
    }
}

/// Failed operations by gRPC code (or the generator's own reason), with a sample message.
#[derive(Default)]
pub struct Errors {
    by_code: Mutex<BTreeMap<String, (u64, Vec<String>)>>,
    total: AtomicU64,
}

impl Errors {
    pub fn status(&self, status: &tonic::Status) {
        self.count(&format!("{:?}", status.code()), status.message());
    }

    pub fn count(&self, code: &str, message: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut by_code = self.by_code.lock().expect("errors lock");
        let (count, samples) = by_code.entry(code.to_string()).or_default();
        *count += 1;
        if samples.len() < limits::ERROR_SAMPLES_PER_CODE_MAX {
            samples.push(message.to_string());
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub fn to_json(&self) -> Value {
        let by_code = self.by_code.lock().expect("errors lock");
        let entries = by_code.iter().map(|(code, (count, samples))| {
            (code.clone(), json!({"count": count, "samples": samples}))
        });
        Value::Object(entries.collect())
    }

    /// One line per code, for the text report.
    pub fn lines(&self) -> Vec<String> {
        let by_code = self.by_code.lock().expect("errors lock");
        by_code
            .iter()
            .map(|(code, (count, samples))| format!("{count} x {code}: {}", samples.join("; ")))
            .collect()
    }
}

/// One row of the report: a named latency series and its rate.
pub struct Row {
    pub name: String,
    pub ops: u64,
    pub seconds: f64,
    pub latency: LatencySummary,
}

impl Row {
    pub fn new(name: &str, ops: u64, seconds: f64, latency: LatencySummary) -> Row {
        Row { name: name.to_string(), ops, seconds, latency }
    }

    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "ops": self.ops, "seconds": self.seconds,
            "per_second": self.per_second(), "latency": self.latency.to_json()})
    }
}

/// Renders rows as a fixed-width table, latencies in milliseconds.
pub fn table(rows: &[Row]) -> String {
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let mut out = format!(
        "{:<16} {:>9} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "series",
        "ops",
        "seconds",
        "per second",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    for row in rows {
        let l = &row.latency;
        out.push_str(&format!(
            "{:<16} {:>9} {:>8.3} {:>11.1} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            row.name,
            row.ops,
            row.seconds,
            row.per_second(),
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.p999_us),
            ms(l.max_us)
        ));
    }
    out
}
