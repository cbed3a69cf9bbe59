//! Logging: `RUST_LOG` filters (env_logger's syntax and matching, default `info`); lines go
//! to stderr as text, `[2026-11-22T02:22:58Z INFO  target] message`, or with
//! `--log-format json` as one JSON object per line for log shippers: `time`, `level`,
//! `target`, `message`, and the record's own fields (the access line's `method`, `path`,
//! `status`...).
//!
//! Lines are written by one writer thread: a request thread formats its line into a
//! thread-local buffer and appends it to a shared one, and the writer, woken by the first
//! line after a quiet spell, lets lines gather for 5 ms and writes them with one `write`.
//! Under load that is one system call and one wake-up for hundreds of lines, instead of a
//! `write` per line with every request thread queueing on stderr, which is what made access
//! lines expensive (docs/benchmarks.md). `flush` (called before the process exits)
//! waits until everything logged so far is written.

use crate::tensor::json::write_json_string;
use log::kv::{Error, Key, Value, VisitSource};
use log::{Log, Metadata, Record};
use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

/// The writer of the installed logger, for `flush`.
static WRITER: OnceLock<Arc<Writer>> = OnceLock::new();

/// Installs the logger. Without RUST_LOG, `info`.
pub fn init(format: LogFormat) {
    // tiny_http logs "Error accepting new client" when we close the listener on purpose
    // at shutdown: keep it quiet unless RUST_LOG asks for it by name.
    let mut spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    if !spec.contains("tiny_http") {
        spec.push_str(",tiny_http=off");
    }
    let filter = env_logger::Builder::new().parse_filters(&spec).build();
    let writer = Writer::start(Box::new(std::io::stderr()));
    let _ = WRITER.set(writer.clone());
    let max_level = filter.filter();
    if log::set_boxed_logger(Box::new(Logger {
        filter,
        format,
        writer,
    }))
    .is_ok()
    {
        log::set_max_level(max_level);
    }
}

/// Waits (up to a second) until every line logged so far has been written.
pub fn flush() {
    if let Some(writer) = WRITER.get() {
        writer.flush(Duration::from_secs(1));
    }
}

struct Logger {
    filter: env_logger::Logger,
    format: LogFormat,
    writer: Arc<Writer>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.filter.matches(record) {
            return;
        }
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let write = |line: &mut Vec<u8>| {
            line.clear();
            match self.format {
                LogFormat::Text => text_line(line, SystemTime::now(), record),
                LogFormat::Json => json_line(line, SystemTime::now(), record),
            }
            self.writer.push(line);
        };
        // A record whose arguments log while being formatted gets a buffer of its own.
        LINE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Vec::new()),
        });
    }

    fn flush(&self) {
        self.writer.flush(Duration::from_secs(1));
    }
}

/// `[2026-11-22T02:22:58Z INFO  onnx_serve::access] message`, as env_logger writes it.
fn text_line(out: &mut Vec<u8>, now: SystemTime, record: &Record) {
    out.push(b'[');
    write_time(out, now, false);
    let level = record.level().as_str();
    out.push(b' ');
    out.extend_from_slice(level.as_bytes());
    out.extend_from_slice(&b"     "[level.len().min(5)..]);
    out.push(b' ');
    out.extend_from_slice(record.target().as_bytes());
    out.extend_from_slice(b"] ");
    match record.args().as_str() {
        Some(text) => out.extend_from_slice(text.as_bytes()),
        None => {
            let _ = write!(out, "{}", record.args());
        }
    }
    out.push(b'\n');
}

/// One record as a JSON object and a newline.
fn json_line(out: &mut Vec<u8>, now: SystemTime, record: &Record) {
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, now, true);
    out.extend_from_slice(b"\",\"level\":");
    write_json_string(out, record.level().as_str());
    out.extend_from_slice(b",\"target\":");
    write_json_string(out, record.target());
    out.extend_from_slice(b",\"message\":");
    match record.args().as_str() {
        Some(text) => write_json_string(out, text),
        // Formatted and escaped straight into the line.
        None => {
            let _ = serde_json::to_writer(&mut *out, record.args());
        }
    }
    let _ = record.key_values().visit(&mut Fields(out));
    out.extend_from_slice(b"}\n");
}

/// Writes a record's key-value pairs as more members of the object: numbers and booleans
/// as such, anything else as a string.
struct Fields<'a>(&'a mut Vec<u8>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let out = &mut *self.0;
        out.push(b',');
        write_json_string(out, key.as_str());
        out.push(b':');
        if let Some(n) = value.to_u64() {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        } else if let Some(n) = value.to_i64() {
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        } else if let Some(b) = value.to_bool() {
            out.extend_from_slice(if b { b"true" } else { b"false" });
        } else if let Some(text) = value.to_borrowed_str() {
            write_json_string(out, text);
        } else {
            write_json_string(out, &value.to_string());
        }
        Ok(())
    }
}

/// RFC 3339 in UTC: `2026-11-22T02:22:58Z`, or with microseconds
/// `2026-11-22T02:22:58.123456Z`.
fn write_time(out: &mut Vec<u8>, now: SystemTime, micros: bool) {
    thread_local! {
        /// The text up to the seconds, made once per second per thread.
        static CACHE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs();
    CACHE.with_borrow_mut(|(cached, text)| {
        if *cached != seconds {
            *cached = seconds;
            text.clear();
            let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
            let second_of_day = seconds % 86_400;
            let _ = write!(
                text,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                second_of_day / 3600,
                second_of_day / 60 % 60,
                second_of_day % 60
            );
        }
        out.extend_from_slice(text);
    });
    if micros {
        let mut digits = [b'0'; 6];
        let mut n = since_epoch.subsec_micros();
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.push(b'.');
        out.extend_from_slice(&digits);
    }
    out.push(b'Z');
}

/// The Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Lines waiting for the writer thread. Past this many bytes, loggers wait for it: a
/// stalled stderr slows the server down rather than growing its memory without bound.
const MAX_PENDING: usize = 1 << 20;
/// How long the writer lets lines gather after the first one, unless this many bytes
/// gather first: a line reaches stderr at most a few milliseconds after it was logged.
const LINGER: Duration = Duration::from_millis(5);
const BATCH: usize = 64 << 10;

struct Writer {
    state: Mutex<Pending>,
    /// Wakes the writer thread when lines arrive.
    arrived: Condvar,
    /// Wakes loggers and `flush` when a batch has been written.
    written: Condvar,
    /// No writer thread (it could not be started): loggers write themselves.
    direct: bool,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// Lines pushed so far, and lines written so far.
    pushed: u64,
    done: u64,
    /// The writer thread is waiting for lines (and must be woken).
    idle: bool,
    /// Threads waiting in `flush`: the writer does not linger for them.
    flushing: usize,
}

impl Writer {
    /// Starts the writer thread, which writes to `out`.
    fn start(out: Box<dyn Write + Send>) -> Arc<Writer> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Writer>>();
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                if let Ok(writer) = rx.recv() {
                    writer.run(out);
                }
            });
        let writer = Arc::new(Writer {
            state: Mutex::new(Pending::default()),
            arrived: Condvar::new(),
            written: Condvar::new(),
            direct: spawned.is_err(),
        });
        let _ = tx.send(writer.clone());
        writer
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Pending is consistent between statements: a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: &[u8]) {
        if self.direct {
            let _ = std::io::stderr().lock().write_all(line);
            return;
        }
        let mut state = self.lock();
        while state.lines.len() > MAX_PENDING {
            state = self.written.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.lines.extend_from_slice(line);
        state.pushed += 1;
        // Only the first line after a quiet spell wakes the writer, and a full batch ends
        // its wait early: under load, request threads make no system call to log.
        let full = state.lines.len() >= BATCH && state.lines.len() - line.len() < BATCH;
        if state.idle || full {
            state.idle = false;
            self.arrived.notify_one();
        }
    }

    /// The writer thread: once lines arrive, lets more gather for a moment, then writes
    /// them all at once.
    fn run(&self, mut out: Box<dyn Write + Send>) {
        let mut batch = Vec::new();
        loop {
            let upto = {
                let mut state = self.lock();
                while state.lines.is_empty() {
                    state.idle = true;
                    state = self.arrived.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                if state.lines.len() < BATCH && state.flushing == 0 {
                    // Woken early by a full batch or a flush.
                    state = self
                        .arrived
                        .wait_timeout(state, LINGER)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                std::mem::swap(&mut batch, &mut state.lines);
                state.pushed
            };
            let _ = out.write_all(&batch).and_then(|_| out.flush());
            batch.clear();
            self.lock().done = upto;
            self.written.notify_all();
        }
    }

    fn flush(&self, timeout: Duration) {
        if self.direct {
            return;
        }
        let mut state = self.lock();
        let target = state.pushed;
        state.flushing += 1;
        self.arrived.notify_one();
        let (mut state, _) = self
            .written
            .wait_timeout_while(state, timeout, |s| s.done < target)
            .unwrap_or_else(|p| p.into_inner());
        state.flushing -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_line(format: LogFormat, fields: &[(&str, Value)]) -> String {
        let record = Record::builder()
            .level(log::Level::Info)
            .target("onnx_serve::access")
            .args(format_args!("line \"one\"\nand two"))
            .key_values(&fields)
            .build();
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_314_178_123_456);
        let mut out = Vec::new();
        match format {
            LogFormat::Text => text_line(&mut out, time, &record),
            LogFormat::Json => json_line(&mut out, time, &record),
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_become_one_json_object_per_line() {
        let fields = [
            ("status", Value::from(404u16)),
            ("path", Value::from("/a\"b")),
            ("ok", Value::from(false)),
        ];
        let line = record_line(LogFormat::Json, &fields);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-11-22T02:22:58.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "onnx_serve::access");
        assert_eq!(v["message"], "line \"one\"\nand two");
        assert_eq!(v["status"], 404);
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["ok"], false);
    }

    #[test]
    fn text_lines_look_like_env_loggers() {
        let line = record_line(LogFormat::Text, &[]);
        assert_eq!(
            line,
            "[2026-11-22T02:22:58Z INFO  onnx_serve::access] line \"one\"\nand two\n"
        );
    }

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
    }

    /// A `Write` into a shared buffer.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_writes_every_line_in_order_before_flush_returns() {
        let out = Shared::default();
        let writer = Writer::start(Box::new(out.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        writer.push(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        writer.flush(Duration::from_secs(5));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2000);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|i| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>());
        }
    }
}
