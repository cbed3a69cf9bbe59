//! The JSON of Triton's statistics extension, `GET /v2/models/{m}[/versions/{v}]/stats`:
//! the shape only, filled by whoever keeps the counters.
//!
//! Field names, order and types are those Triton's core writes
//! (`TRITONSERVER_ServerModelStatistics`), every number a JSON unsigned integer:
//! Triton's own gRPC front end reads them back with `MemberAsUInt` and perf_analyzer with
//! rapidjson's `GetUint64`, which fail on a float or a negative number, and perf_analyzer
//! reads `inference_stats.cache_hit` and `cache_miss` unconditionally, so they are always
//! written (zero when there is no cache). `tritonclient.http`'s
//! `get_inference_statistics()` returns the parsed JSON as a dict.
//!
//! What Triton counts, to fill it the same way:
//! - `inference_count`: inferences, one per batch row (a request of 8 rows counts 8);
//!   `execution_count`: model runs (a dynamic batch of 64 requests counts 1);
//! - `last_inference`: milliseconds since the Unix epoch of the last request, 0 before any;
//! - `inference_stats.success`: requests that succeeded, with their whole duration;
//!   `fail`: requests that failed; `queue`: the time successful requests waited, counted
//!   once per successful request (its count equals `success.count`);
//!   `compute_input` / `compute_infer` / `compute_output`: preparing inputs, running the
//!   model, extracting outputs, per successful request (their counts equal
//!   `success.count` minus cache hits);
//! - `batch_stats`: per batch size the model ran with, in increasing batch size, the count
//!   of runs of that size (in each of its three `count`s) and their durations;
//! - `response_stats` (per response index, decoupled models) and `memory_usage`: empty here.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole response: statistics for each model (and version) asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatsResponse {
    pub model_stats: Vec<ModelStatistics>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStatistics {
    pub name: String,
    /// Triton writes the version as a string ("1").
    pub version: String,
    /// Milliseconds since the Unix epoch; 0 before the first inference.
    pub last_inference: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    #[serde(default)]
    pub response_stats: BTreeMap<String, ResponseStatistics>,
    #[serde(default)]
    pub batch_stats: Vec<BatchStatistics>,
    #[serde(default)]
    pub memory_usage: Vec<MemoryUsage>,
}

/// A count and the total nanoseconds of what was counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

impl Duration {
    /// Counts one occurrence that took `ns` nanoseconds (saturating, never wrapping).
    pub fn record(&mut self, ns: u64) {
        self.count = self.count.saturating_add(1);
        self.ns = self.ns.saturating_add(ns);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferStatistics {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    #[serde(default)]
    pub cache_hit: Duration,
    #[serde(default)]
    pub cache_miss: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatistics {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// Per response of a decoupled model (Triton keys them "0", "1", ...). Never filled here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseStatistics {
    pub compute_infer: Duration,
    pub compute_output: Duration,
    pub success: Duration,
    pub fail: Duration,
    pub empty_response: Duration,
    pub cancel: Duration,
}

/// Memory a model holds on a device (`"type": "CPU"`, `"id": 0`, bytes). Never filled here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: i64,
    pub byte_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The example in the README of triton-inference-server/backend (`curl
    /// localhost:8000/v2/models/batching/stats`, December 2021), from before cache_hit,
    /// cache_miss, response_stats and memory_usage existed.
    const TRITON_2112: &str = r#"{"model_stats":[{"name":"batching","version":"1","last_inference":1640111452223,"inference_count":2,"execution_count":1,"inference_stats":{"success":{"count":2,"ns":9997025869},"fail":{"count":0,"ns":0},"queue":{"count":2,"ns":9996491319},"compute_input":{"count":2,"ns":95288},"compute_infer":{"count":2,"ns":232202},"compute_output":{"count":2,"ns":195850}},"batch_stats":[{"batch_size":2,"compute_input":{"count":1,"ns":47644},"compute_infer":{"count":1,"ns":116101},"compute_output":{"count":1,"ns":97925}}]}]}"#;

    #[test]
    fn reads_tritons_documented_answer_and_writes_todays_fields() {
        let parsed: ModelStatsResponse = serde_json::from_str(TRITON_2112).unwrap();
        let model = &parsed.model_stats[0];
        assert_eq!(
            model.inference_stats.success,
            Duration {
                count: 2,
                ns: 9_997_025_869
            }
        );
        assert_eq!(model.batch_stats[0].batch_size, 2);
        let written: Value = serde_json::to_value(&parsed).unwrap();
        let mut expected: Value = serde_json::from_str(TRITON_2112).unwrap();
        let stat = &mut expected["model_stats"][0];
        stat["inference_stats"]["cache_hit"] = json!({"count": 0, "ns": 0});
        stat["inference_stats"]["cache_miss"] = json!({"count": 0, "ns": 0});
        stat["response_stats"] = json!({});
        stat["memory_usage"] = json!([]);
        assert_eq!(written, expected);
    }

    #[test]
    fn field_order_and_integer_types_follow_triton() {
        let mut stats = ModelStatistics {
            name: "m".into(),
            version: "1".into(),
            ..Default::default()
        };
        stats.inference_stats.success.record(1_500);
        stats.batch_stats.push(BatchStatistics {
            batch_size: 4,
            ..Default::default()
        });
        let text = serde_json::to_string(&ModelStatsResponse {
            model_stats: vec![stats],
        })
        .unwrap();
        assert_eq!(
            text,
            r#"{"model_stats":[{"name":"m","version":"1","last_inference":0,"inference_count":0,"execution_count":0,"inference_stats":{"success":{"count":1,"ns":1500},"fail":{"count":0,"ns":0},"queue":{"count":0,"ns":0},"compute_input":{"count":0,"ns":0},"compute_infer":{"count":0,"ns":0},"compute_output":{"count":0,"ns":0},"cache_hit":{"count":0,"ns":0},"cache_miss":{"count":0,"ns":0}},"response_stats":{},"batch_stats":[{"batch_size":4,"compute_input":{"count":0,"ns":0},"compute_infer":{"count":0,"ns":0},"compute_output":{"count":0,"ns":0}}],"memory_usage":[]}]}"#
        );
    }

    #[test]
    fn durations_saturate() {
        let mut d = Duration {
            count: u64::MAX,
            ns: u64::MAX - 1,
        };
        d.record(10);
        assert_eq!(
            d,
            Duration {
                count: u64::MAX,
                ns: u64::MAX
            }
        );
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"count":18446744073709551615,"ns":18446744073709551615}"#
        );
    }
}
