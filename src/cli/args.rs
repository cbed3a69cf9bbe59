//! The command line: flags, their `ONNX_SERVE_*` environment variables, defaults and
//! validation, and the settings they make. A bad value stops the program with a clear
//! message and exit code 2.

use crate::api::ImageSettings;
use crate::engine::{BatchConfig, Execution, InputShape};
use crate::http::{ApiKey, Auth, BodyLimits, Cors, Settings};
use crate::ops::logging::LogFormat;
use crate::tensor::image::DEFAULT_MAX_PIXELS;
use clap::{Args, Parser, Subcommand};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "onnx-serve",
    version,
    about = "Serve one ONNX model over HTTP: POST /predict with JSON tensors",
    after_help = "Every flag can also be set with an environment variable: --max-body is \
                  ONNX_SERVE_MAX_BODY. PORT is honoured when neither --port nor ONNX_SERVE_PORT is set."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The ONNX model: a file, or a directory holding one (one *.onnx file, or Triton's
    /// VERSION/model.onnx or NAME/VERSION/model.onnx layout) [default: the model built into
    /// the binary, if any, else model.onnx]
    #[arg(long, global = true, env = "ONNX_SERVE_MODEL")]
    pub model: Option<PathBuf>,

    /// Give an input a concrete shape at start-up, NAME=1,3,640,640 (repeatable; in the
    /// environment, separated by spaces): its plan is built before the server is ready, and
    /// requests must send that shape
    #[arg(long = "input-shape", global = true, env = "ONNX_SERVE_INPUT_SHAPE",
          value_name = "NAME=DIMS", value_delimiter = ' ', value_parser = parse_input_shape)]
    pub input_shapes: Vec<InputShape>,

    /// Class labels, one per line in class order, for the output whose last dimension is
    /// their number: /predict answers then carry the top classes by name [default: the
    /// labels the model carries (ZipMap, ONNX-ML classifier, metadata), if any]
    #[arg(long, global = true, env = "ONNX_SERVE_LABELS", value_name = "FILE")]
    pub labels: Option<PathBuf>,

    /// The output the labels are for, when several end in that many classes
    #[arg(
        long,
        global = true,
        env = "ONNX_SERVE_LABELS_OUTPUT",
        value_name = "NAME"
    )]
    pub labels_output: Option<String>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the model's signature (names, datatypes, shapes; -1 for variable dims) as JSON
    Inspect,
    /// Read one /predict request body from stdin, print the response JSON; no server
    Predict,
    /// GET a health route of the server listening on --host/--port on this host; exit 0 on
    /// a 200, else 1 (for container HEALTHCHECKs: the image has no curl)
    Healthcheck {
        /// The route to GET
        #[arg(long, env = "ONNX_SERVE_PATH", default_value = "/healthz")]
        path: String,
        /// How long to wait for the connection and for the answer
        #[arg(long, env = "ONNX_SERVE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on; 0.0.0.0 (or ::) to accept connections from other hosts
    #[arg(
        long,
        global = true,
        env = "ONNX_SERVE_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,

    /// Port to listen on; 0 picks a free one (the log says which) [default: $PORT or 8000]
    #[arg(long, global = true, env = "ONNX_SERVE_PORT")]
    pub port: Option<u16>,

    /// Name of the model in the V2 and V1 routes [default: the model file's stem]
    #[arg(long, env = "ONNX_SERVE_MODEL_NAME", value_parser = model_name)]
    pub model_name: Option<String>,

    /// Requests computing at once (decode, inference, encode) [default: number of cores]
    #[arg(long, env = "ONNX_SERVE_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Requests that may wait for a worker; past that, 503 with Retry-After
    #[arg(long, env = "ONNX_SERVE_QUEUE", default_value_t = 128)]
    pub queue: usize,

    /// Threads one inference may use when no other is running (tract's multithreaded
    /// matrix products): lower latency on an idle server for large models
    #[arg(long, env = "ONNX_SERVE_INTRA_OP_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub intra_op_threads: u16,

    /// Dynamic batching: stack concurrent requests into one run of up to this many rows
    /// (items along the batch dimension); 0 = off. The model's inputs and outputs must all
    /// start with the same variable dimension
    #[arg(long, env = "ONNX_SERVE_MAX_BATCH_SIZE", default_value_t = 0)]
    pub max_batch_size: usize,

    /// With batching, how long (microseconds) a batch that is not full waits for more
    /// requests before it runs
    #[arg(long, env = "ONNX_SERVE_BATCH_DELAY_US", default_value_t = 0)]
    pub batch_delay_us: u64,

    /// For a model whose free input sizes tract cannot analyse, how many plans (one per
    /// input shape, built on first use) are kept; the least recently used goes first
    #[arg(long, env = "ONNX_SERVE_PLAN_CACHE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub plan_cache: u32,

    /// Largest request body accepted (413 above it): bytes, or with a unit (64MiB, 10MB)
    #[arg(long, env = "ONNX_SERVE_MAX_BODY", default_value = "64MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// Time allowed to receive a whole request body (408 after it): 30s, 500ms, 2m
    #[arg(long, env = "ONNX_SERVE_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// An idle keep-alive connection, or a client that stops sending, is closed after this
    /// long (0 = never)
    #[arg(long, env = "ONNX_SERVE_KEEP_ALIVE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub keep_alive_timeout: Duration,

    /// Close keep-alive connections after between half and all of this age, so clients
    /// spread over new replicas after a scale-out (0 = never)
    #[arg(long, env = "ONNX_SERVE_MAX_CONNECTION_AGE", default_value = "0", value_parser = parse_duration)]
    pub max_connection_age: Duration,

    /// On SIGTERM or SIGINT, how long requests in flight may take to finish
    #[arg(long, env = "ONNX_SERVE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Image bodies (/predict with a PNG or JPEG) are scaled to [0, R] before --image-mean
    /// and --image-std: 1, or 255 for a model that takes 0..255 [default: 1; 255 for a
    /// UINT8 input, which takes the pixels as they are]
    #[arg(long, env = "ONNX_SERVE_IMAGE_SCALE", value_name = "R", value_parser = positive_number)]
    pub image_scale: Option<f64>,

    /// Subtracted from image values per channel, after scaling: one value, or one per
    /// channel (R,G,B), e.g. 0.485,0.456,0.406 for ImageNet [default: 0]
    #[arg(long, env = "ONNX_SERVE_IMAGE_MEAN", value_name = "VALUES", value_delimiter = ',',
          value_parser = finite_number)]
    pub image_mean: Vec<f64>,

    /// Image values are divided by this per channel, after the mean: one value, or one per
    /// channel, e.g. 0.229,0.224,0.225 for ImageNet [default: 1]
    #[arg(long, env = "ONNX_SERVE_IMAGE_STD", value_name = "VALUES", value_delimiter = ',',
          value_parser = positive_number)]
    pub image_std: Vec<f64>,

    /// Largest image accepted, in pixels (width x height), checked from its header before
    /// decoding (413 above it)
    #[arg(long, env = "ONNX_SERVE_MAX_IMAGE_PIXELS", value_name = "N",
          default_value_t = DEFAULT_MAX_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_image_pixels: u64,

    /// Runs of the model on zeros (free sizes as 1) before the server reports ready, so that
    /// the first request does not pay for the first run; 0 = none
    #[arg(long, env = "ONNX_SERVE_WARMUP", value_name = "N", default_value_t = 1)]
    pub warmup: u32,

    /// Log lines as text, or as one JSON object per line (for log shippers)
    #[arg(long, global = true, env = "ONNX_SERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Require `Authorization: Bearer KEY` on every route but the health routes. Prefer
    /// ONNX_SERVE_API_KEY or --api-key-file: a command line is visible to other users
    #[arg(long, env = "ONNX_SERVE_API_KEY", hide_env_values = true, value_name = "KEY",
          value_parser = |s: &str| Ok::<_, std::convert::Infallible>(Secret(s.to_owned())))]
    pub api_key: Option<Secret>,

    /// Read the API key from this file (surrounding whitespace and newlines are ignored)
    #[arg(long, env = "ONNX_SERVE_API_KEY_FILE", value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// Let web pages from this origin call the API (CORS): scheme://host[:port], or * for
    /// any. Repeat the flag, or separate origins with commas [default: no CORS headers]
    #[arg(
        long = "cors-origin",
        env = "ONNX_SERVE_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
}

/// A flag's value that must never be printed, not even by `{:?}`.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

impl ServeArgs {
    /// The port: `--port`, else `ONNX_SERVE_PORT`, else `PORT` (KServe, Knative, PaaS), else 8000.
    pub fn port(&self) -> Result<u16, String> {
        if let Some(port) = self.port {
            return Ok(port);
        }
        match std::env::var("PORT") {
            Ok(value) => value
                .trim()
                .parse()
                .map_err(|_| format!("PORT={value:?} is not a port number")),
            Err(_) => Ok(8000),
        }
    }

    pub fn address(&self) -> Result<SocketAddr, String> {
        let port = self.port()?;
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("--host {:?}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("--host {:?} resolves to no address", self.host))
    }

    pub fn workers(&self) -> usize {
        match self.workers {
            Some(n) => n as usize,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }

    /// How the model runs: worker slots and their line, intra-op threads, batching, a run
    /// thread per worker.
    pub fn execution(&self) -> Execution {
        Execution {
            workers: self.workers(),
            queue: self.queue,
            intra_op_threads: self.intra_op_threads as usize,
            batching: (self.max_batch_size > 0).then(|| BatchConfig {
                max_rows: self.max_batch_size,
                delay: Duration::from_micros(self.batch_delay_us),
                runners: self.workers(),
                max_waiting: self.queue,
            }),
            run_threads: self.workers(),
            plan_cache: self.plan_cache as usize,
        }
    }

    /// Who may call: the key of `--api-key` (or `ONNX_SERVE_API_KEY`) or of
    /// `--api-key-file`, or anyone.
    pub fn auth(&self) -> Result<Auth, String> {
        let key = match (&self.api_key, &self.api_key_file) {
            (Some(_), Some(_)) => {
                return Err("give the API key once: --api-key (ONNX_SERVE_API_KEY) or \
                            --api-key-file, not both"
                    .into());
            }
            (Some(Secret(key)), None) => ApiKey::new(key).map_err(|e| format!("--api-key: {e}"))?,
            (None, Some(path)) => ApiKey::from_file(path)?,
            (None, None) => return Ok(Auth::open()),
        };
        Ok(Auth::with_key(key))
    }

    pub fn cors(&self) -> Result<Cors, String> {
        Cors::new(&self.cors_origins)
    }

    /// How image bodies become the model's input.
    pub fn images(&self) -> ImageSettings {
        ImageSettings {
            range: self.image_scale,
            mean: self.image_mean.clone(),
            std: self.image_std.clone(),
            max_pixels: self.max_image_pixels,
        }
    }

    pub fn settings(&self) -> Settings {
        let optional = |d: Duration| (!d.is_zero()).then_some(d);
        Settings {
            limits: BodyLimits {
                max_bytes: self.max_body,
                read_timeout: self.read_timeout,
            },
            keep_alive_timeout: optional(self.keep_alive_timeout),
            write_timeout: self.read_timeout,
            max_connection_age: optional(self.max_connection_age),
            max_threads: 1024,
            idle_threads: (2 * self.workers()).max(16),
        }
    }
}

fn model_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 200 {
        return Err("must be 1 to 200 characters".into());
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err("may hold only letters, digits, '-', '_' and '.' (it appears in URLs)".into());
    }
    Ok(value.to_owned())
}

/// `image=1,3,640,640`: an input's name and its concrete shape.
fn parse_input_shape(value: &str) -> Result<InputShape, String> {
    let (input, dims) = value
        .rsplit_once('=')
        .ok_or_else(|| format!("{value:?}: expected NAME=DIMS, e.g. image=1,3,640,640"))?;
    let shape = dims
        .split(',')
        .map(|d| match d.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{value:?}: dimensions are positive whole numbers separated by commas"
            )),
        })
        .collect::<Result<Vec<usize>, String>>()?;
    if input.is_empty() {
        return Err(format!("{value:?}: the input's name is missing"));
    }
    Ok(InputShape {
        input: input.to_owned(),
        shape,
    })
}

fn finite_number(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err(format!("{value:?} is not a number")),
    }
}

fn positive_number(value: &str) -> Result<f64, String> {
    match finite_number(value)? {
        n if n > 0.0 => Ok(n),
        _ => Err(format!("{value:?} is not a number above 0")),
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds (`30`, `0.5`).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "us" => number / 1_000_000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {value:?}; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{value:?} is out of range"))
}

/// `67108864`, `64MiB`, `64M` (binary), `64MB` (decimal), `512KiB`, `1GiB`.
pub fn parse_size(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a size (e.g. 64MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {value:?}; use KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    let bytes = number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{value:?} is too large"))?;
    match usize::try_from(bytes) {
        Ok(0) => Err("must be at least 1 byte".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{value:?} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_of_every_command_has_its_environment_variable() {
        use clap::CommandFactory;
        let root = Cli::command();
        let commands = std::iter::once(&root).chain(root.get_subcommands());
        let mut checked = 0;
        for command in commands {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version"].contains(&long) {
                    continue;
                }
                let expected = format!("ONNX_SERVE_{}", long.to_uppercase().replace('-', "_"));
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert_eq!(env, Some(expected), "--{long} of {}", command.get_name());
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} flags seen");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn input_shapes() {
        let shape = parse_input_shape("images=1,3,640,640").unwrap();
        assert_eq!(shape.input, "images");
        assert_eq!(shape.shape, vec![1, 3, 640, 640]);
        // A name may hold '=' (only the last one splits).
        assert_eq!(parse_input_shape("a=b=2").unwrap().input, "a=b");
        for bad in ["images", "=1,2", "x=1,,2", "x=1,0", "x=-1", "x=a"] {
            assert!(parse_input_shape(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_flags_take_lists_of_numbers() {
        let cli = Cli::try_parse_from([
            "onnx-serve",
            "--image-mean",
            "0.485,0.456,0.406",
            "--image-std",
            "0.229",
            "--image-scale",
            "255",
        ])
        .unwrap();
        let images = cli.serve.images();
        assert_eq!(images.mean, [0.485, 0.456, 0.406]);
        assert_eq!(images.std, [0.229]);
        assert_eq!(images.range, Some(255.0));
        assert_eq!(images.max_pixels, DEFAULT_MAX_PIXELS);
        assert_eq!(cli.serve.warmup, 1);
        for bad in [
            ["--image-std", "0"],
            ["--image-mean", "a,b"],
            ["--image-scale", "-1"],
            ["--max-image-pixels", "0"],
        ] {
            assert!(
                Cli::try_parse_from(["onnx-serve", bad[0], bad[1]]).is_err(),
                "{bad:?}"
            );
        }
        // The labels flags are global: `predict` takes them too.
        let cli = Cli::try_parse_from(["onnx-serve", "predict", "--labels", "l.txt"]).unwrap();
        assert_eq!(cli.labels, Some(PathBuf::from("l.txt")));
    }

    #[test]
    fn model_names_must_fit_in_a_url() {
        assert!(model_name("digits-v2.1_x").is_ok());
        assert!(model_name("a/b").is_err());
        assert!(model_name("").is_err());
    }
}
