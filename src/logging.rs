//! Logging set-up: env_logger on stderr, filtered by `RUST_LOG` (default `info`), as
//! human-readable lines or, with `--log-format json`, one JSON object per line for log
//! shippers: `time`, `level`, `target`, `message`, and the record's own fields (the access
//! line's `method`, `path`, `status`...).

use crate::tensor::json::write_json_string;
use log::kv::{Error, Key, Value, VisitSource};
use std::io::Write;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `[time LEVEL target] message`
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

pub fn init(format: LogFormat) {
    // tiny_http logs "Error accepting new client" when we close the listener on purpose
    // at shutdown: keep it quiet unless RUST_LOG asks for it by name.
    let mut filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    if !filter.contains("tiny_http") {
        filter.push_str(",tiny_http=off");
    }
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filter);
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = json_line(&buf.timestamp_micros().to_string(), record);
            buf.write_all(&line)
        });
    }
    builder.init();
}

/// One record as a JSON object and a newline.
fn json_line(time: &str, record: &log::Record) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"time\":");
    write_json_string(&mut out, time);
    out.extend_from_slice(b",\"level\":");
    write_json_string(&mut out, record.level().as_str());
    out.extend_from_slice(b",\"target\":");
    write_json_string(&mut out, record.target());
    out.extend_from_slice(b",\"message\":");
    match record.args().as_str() {
        Some(text) => write_json_string(&mut out, text),
        None => write_json_string(&mut out, &record.args().to_string()),
    }
    let _ = record.key_values().visit(&mut Fields(&mut out));
    out.extend_from_slice(b"}\n");
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_one_json_object_per_line() {
        let fields: [(&str, Value); 3] = [
            ("status", Value::from(404u16)),
            ("path", Value::from("/a\"b")),
            ("ok", Value::from(false)),
        ];
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("onnx_serve::access")
            .args(format_args!("line \"one\"\nand two"))
            .key_values(&fields)
            .build();
        let line = json_line("2026-01-01T00:00:00.000000Z", &record);
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "onnx_serve::access");
        assert_eq!(v["message"], "line \"one\"\nand two");
        assert_eq!(v["status"], 404);
        assert_eq!(v["path"], "/a\"b");
        assert_eq!(v["ok"], false);
    }
}
