//! Prometheus metrics: the histograms and counters, and the text format `GET /metrics`
//! serves.
//!
//! Everything a request touches is allocated at start-up and updated with relaxed atomic
//! adds: a counter per route and status, a duration histogram per route, no lock and no
//! allocation on the request path. Labels are the route templates (`/v2/models/{model}/infer`),
//! never raw paths, so the number of series is bounded whatever clients send. The text is
//! only put together when it is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What a histogram measures: the upper bounds of its buckets, in the unit it counts in,
/// the same bounds as written in the `le` label, and how many counted units make one
/// exposed unit.
pub struct Scale {
    bounds: &'static [u64],
    labels: &'static [&'static str],
    per_unit: f64,
}

/// Durations, counted in nanoseconds and exposed in seconds: 100 µs to 10 s.
pub static SECONDS: Scale = Scale {
    bounds: &[
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
    ],
    labels: &[
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25", "0.5", "1", "2.5", "5", "10",
    ],
    per_unit: 1e9,
};

/// Rows in one run of the model: 1 to 1024, in powers of two.
pub static ROWS: Scale = Scale {
    bounds: &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    labels: &[
        "1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024",
    ],
    per_unit: 1.0,
};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A histogram. Each observation adds to one bucket (made cumulative when written) and to
/// the sum; the count is the sum of the buckets, so the two always agree.
pub struct Histogram {
    scale: &'static Scale,
    /// One per bound, and the last for values past every bound (`+Inf`).
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(scale: &'static Scale) -> Histogram {
        Histogram {
            scale,
            buckets: (0..=scale.bounds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// A histogram of durations (`SECONDS`).
    pub fn seconds() -> Histogram {
        Histogram::new(&SECONDS)
    }

    pub fn observe(&self, elapsed: Duration) {
        self.observe_value(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Observes a value in the scale's counted unit (nanoseconds, rows).
    pub fn observe_value(&self, value: u64) {
        // The first bucket whose bound is >= the value (buckets are "less or equal").
        let bucket = self.scale.bounds.partition_point(|&bound| bound < value);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The `_bucket`, `_sum` and `_count` lines; `labels` is empty or `key="value",`.
    pub fn write(&self, out: &mut Exposition, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bucket, le) in self
            .buckets
            .iter()
            .zip(self.scale.labels.iter().chain(["+Inf"].iter()))
        {
            cumulative += bucket.load(Relaxed);
            out.line(format_args!(
                "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}"
            ));
        }
        let labels = match labels.trim_end_matches(',') {
            "" => String::new(),
            some => format!("{{{some}}}"),
        };
        let sum = self.sum.load(Relaxed) as f64 / self.scale.per_unit;
        out.line(format_args!("{name}_sum{labels} {sum}"));
        out.line(format_args!("{name}_count{labels} {cumulative}"));
    }
}

/// HTTP statuses 100..=599 each have a counter; anything else counts as 599.
const STATUSES: usize = 500;

fn status_slot(status: u16) -> usize {
    usize::from(status.clamp(100, 599) - 100)
}

/// The metrics of request handling: a counter per route and status, a duration histogram
/// per route, requests in flight and panics caught. Routes are known by their index in the
/// route table; one more slot counts the requests that matched no route.
pub struct RequestMetrics {
    /// The route templates, by index: the `route` label.
    routes: Vec<&'static str>,
    requests: Box<[[AtomicU64; STATUSES]]>,
    request_seconds: Box<[Histogram]>,
    in_flight: AtomicI64,
    panics: AtomicU64,
}

impl RequestMetrics {
    /// Metrics for routes labelled by these templates, in table order.
    pub fn new(routes: Vec<&'static str>) -> RequestMetrics {
        let slots = routes.len() + 1;
        RequestMetrics {
            routes,
            requests: (0..slots)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            request_seconds: (0..slots).map(|_| Histogram::seconds()).collect(),
            in_flight: AtomicI64::new(0),
            panics: AtomicU64::new(0),
        }
    }

    fn slot(&self, route: Option<usize>) -> usize {
        route.map_or(self.routes.len(), |ix| ix.min(self.routes.len()))
    }

    fn label(&self, slot: usize) -> &'static str {
        self.routes.get(slot).copied().unwrap_or("unmatched")
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn start_request(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight { metrics: self }
    }

    /// Counts an answered request. Called when its response is ready, before it is sent,
    /// so a client that has its answer also sees it counted.
    pub fn record_request(&self, route: Option<usize>, status: u16, elapsed: Duration) {
        let slot = self.slot(route);
        self.requests[slot][status_slot(status)].fetch_add(1, Relaxed);
        self.request_seconds[slot].observe(elapsed);
    }

    /// A panic caught while handling a request.
    pub fn panic_caught(&self) {
        self.panics.fetch_add(1, Relaxed);
    }

    pub fn panics(&self) -> u64 {
        self.panics.load(Relaxed)
    }

    /// Requests answered so far on `route` with `status`.
    pub fn requests(&self, route: Option<usize>, status: u16) -> u64 {
        self.requests[self.slot(route)][status_slot(status)].load(Relaxed)
    }

    /// The request counters, durations and the in-flight gauge.
    pub fn write(&self, out: &mut Exposition) {
        out.header(
            "onnx_serve_requests_total",
            "counter",
            "Requests answered, by route template and HTTP status.",
        );
        for (slot, statuses) in self.requests.iter().enumerate() {
            let route = escape(self.label(slot));
            for (offset, count) in statuses.iter().enumerate() {
                let count = count.load(Relaxed);
                if count > 0 {
                    let status = offset + 100;
                    out.line(format_args!(
                        "onnx_serve_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                    ));
                }
            }
        }
        out.header(
            "onnx_serve_request_duration_seconds",
            "histogram",
            "Time from a request's head arriving to its response being ready, by route template.",
        );
        for (slot, histogram) in self.request_seconds.iter().enumerate() {
            if histogram.count() > 0 {
                let labels = format!("route=\"{}\",", escape(self.label(slot)));
                histogram.write(out, "onnx_serve_request_duration_seconds", &labels);
            }
        }
        out.gauge(
            "onnx_serve_requests_in_flight",
            "Requests received and not yet answered.",
            self.in_flight.load(Relaxed),
        );
    }
}

/// A request in flight; see `RequestMetrics::start_request`.
pub struct InFlight<'a> {
    metrics: &'a RequestMetrics,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Relaxed);
    }
}

/// The text exposition format, written as it is scraped.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            text: String::with_capacity(8 * 1024),
        }
    }

    /// The `# HELP` and `# TYPE` lines of a metric.
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// A gauge with no labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, "gauge", help);
        self.line(format_args!("{name} {value}"));
    }

    /// A histogram with no labels.
    pub fn histogram(&mut self, name: &str, help: &str, histogram: &Histogram) {
        self.header(name, "histogram", help);
        histogram.write(self, name, "");
    }

    /// One sample line.
    pub fn line(&mut self, line: std::fmt::Arguments) {
        let _ = self.text.write_fmt(line);
        self.text.push('\n');
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// A label value as the exposition format writes it.
pub fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_or_above_them() {
        let h = Histogram::seconds();
        h.observe(Duration::from_micros(100)); // exactly on the first bound
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(11)); // past the last bound: +Inf only
        let mut out = Exposition::new();
        h.write(&mut out, "x", "");
        let out = out.into_text();
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.00025\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
        assert!(out.contains("x_sum 11.000201\n"), "{out}");
    }

    #[test]
    fn row_counts_are_written_as_whole_numbers() {
        let h = Histogram::new(&ROWS);
        for rows in [1, 3, 64, 2000] {
            h.observe_value(rows);
        }
        let mut out = Exposition::new();
        h.write(&mut out, "rows", "");
        let out = out.into_text();
        assert!(out.contains("rows_bucket{le=\"1\"} 1\n"), "{out}");
        assert!(out.contains("rows_bucket{le=\"4\"} 2\n"), "{out}");
        assert!(out.contains("rows_bucket{le=\"64\"} 3\n"), "{out}");
        assert!(out.contains("rows_bucket{le=\"1024\"} 3\n"), "{out}");
        assert!(out.contains("rows_bucket{le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("rows_sum 2068\n"), "{out}");
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = RequestMetrics::new(vec!["/", "/predict"]);
        m.record_request(Some(1), 200, Duration::ZERO);
        m.record_request(Some(1), 200, Duration::ZERO);
        m.record_request(None, 404, Duration::ZERO);
        m.record_request(None, 1000, Duration::ZERO);
        assert_eq!(m.requests(Some(1), 200), 2);
        assert_eq!(m.requests(Some(1), 400), 0);
        assert_eq!(m.requests(None, 404), 1);
        assert_eq!(m.requests(None, 599), 1);
        let mut out = Exposition::new();
        m.write(&mut out);
        let text = out.into_text();
        assert!(
            text.contains("{route=\"/predict\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("{route=\"unmatched\",status=\"404\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
