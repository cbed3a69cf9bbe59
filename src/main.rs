//! `onnx-serve`: parse the command line, set up logging, load the model, serve it.
//!
//! Exit codes: 0 after a clean shutdown; 1 when serving failed (the listener died, or the
//! drain deadline passed); 2 when it could not start (bad flags, a model tract cannot
//! load, an address it cannot bind).

use clap::Parser;
use log::{error, info};
use onnx_serve::api::simple;
use onnx_serve::app::App;
use onnx_serve::config::{Cli, Command};
use onnx_serve::cors::Cors;
use onnx_serve::embedded::{self, Embedded};
use onnx_serve::logging;
use onnx_serve::model::{LoadError, Model};
use onnx_serve::model_path;
use onnx_serve::server::{self, Event, Server};
use onnx_serve::workers::Workers;
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

const CANNOT_START: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let code = match cli.command {
        Some(Command::Inspect) => inspect(&cli),
        Some(Command::Predict) => predict(&cli),
        Some(Command::Healthcheck { ref path, timeout }) => healthcheck(&cli, path, timeout),
        None => serve(&cli),
    };
    // Log lines are written by a thread of their own: let it finish before exiting.
    logging::flush();
    code
}

fn init_logging(cli: &Cli) {
    logging::init(cli.serve.log_format);
    // A panic is logged as one line, never a raw trace on stderr; the request that hit it
    // gets a 500 and the server goes on (server.rs).
    std::panic::set_hook(Box::new(|info| {
        error!("{info}");
        logging::flush();
    }));
}

/// Logs the message and returns the "could not start" exit code.
fn cannot_start(message: impl std::fmt::Display) -> ExitCode {
    error!("{message}");
    ExitCode::from(CANNOT_START)
}

/// The model to serve: `--model` (a file or a directory), else the model built into the
/// binary, else `./model.onnx`.
enum Source {
    File(model_path::Resolved),
    Embedded(&'static Embedded),
}

impl Source {
    fn choose(cli: &Cli) -> Result<Source, String> {
        match (&cli.model, &embedded::MODEL) {
            (Some(path), _) => model_path::resolve(path).map(Source::File),
            (None, Some(embedded)) => Ok(Source::Embedded(embedded)),
            (None, None) => model_path::resolve(Path::new("model.onnx")).map(Source::File),
        }
    }

    /// The model name the source suggests (`--model-name` overrides it).
    fn name(&self) -> &str {
        match self {
            Source::File(resolved) => &resolved.name,
            Source::Embedded(embedded) => embedded.name,
        }
    }

    /// The model version the source suggests (Triton's `VERSION` directory, else "1").
    fn version(&self) -> String {
        match self {
            Source::File(resolved) => resolved.version.clone(),
            Source::Embedded(_) => model_path::DEFAULT_VERSION.to_owned(),
        }
    }

    /// Where the model comes from, for messages.
    fn origin(&self) -> String {
        match self {
            Source::File(resolved) => resolved.file.display().to_string(),
            Source::Embedded(embedded) => {
                format!("the binary (built from {})", embedded.built_from)
            }
        }
    }

    fn load(&self) -> Result<Model, LoadError> {
        match self {
            Source::File(resolved) => Model::load(&resolved.file),
            Source::Embedded(embedded) => Model::load_bytes(embedded.bytes, &self.origin()),
        }
    }
}

fn load(cli: &Cli) -> Result<(Model, Source), String> {
    let source = Source::choose(cli)?;
    let model = source.load().map_err(|e| e.to_string())?;
    Ok((model, source))
}

fn inspect(cli: &Cli) -> ExitCode {
    let (model, source) = match load(cli) {
        Ok(loaded) => loaded,
        Err(e) => return cannot_start(e),
    };
    let signature = model.signature();
    let description = serde_json::json!({
        "model": source.origin(),
        "name": cli.serve.model_name.as_deref().unwrap_or(source.name()),
        "version": source.version(),
        "inputs": signature.inputs.iter().map(|s| s.describe()).collect::<Vec<_>>(),
        "outputs": signature.outputs.iter().map(|s| s.describe()).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&description).expect("JSON values serialize")
    );
    ExitCode::SUCCESS
}

fn predict(cli: &Cli) -> ExitCode {
    let (model, _) = match load(cli) {
        Ok(loaded) => loaded,
        Err(e) => return cannot_start(e),
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        return cannot_start(format!("cannot read the request from stdin: {e}"));
    }
    let (answer, code) = match simple::predict_json(&model, &body, None) {
        Ok(json) => (json, ExitCode::SUCCESS),
        Err(e) => (e.body(), ExitCode::FAILURE),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(&answer)
        .and_then(|_| stdout.write_all(b"\n"));
    code
}

/// Exit 0 when the server on --host/--port answers 200 on `path`, else log why and exit 1.
fn healthcheck(cli: &Cli, path: &str, timeout: std::time::Duration) -> ExitCode {
    let address = match cli.serve.address() {
        Ok(address) => address,
        Err(e) => return cannot_start(e),
    };
    match onnx_serve::healthcheck::probe(address, path, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli) -> ExitCode {
    let args = &cli.serve;
    let source = match Source::choose(cli) {
        Ok(source) => source,
        Err(e) => return cannot_start(e),
    };
    let address = match args.address() {
        Ok(address) => address,
        Err(e) => return cannot_start(e),
    };
    raise_open_files_limit();
    let settings = args.settings();
    let listener = match server::bind(address, &settings) {
        Ok(listener) => listener,
        Err(e) => return cannot_start(format!("cannot listen on {address}: {e}")),
    };
    let name = args
        .model_name
        .clone()
        .unwrap_or_else(|| source.name().to_owned());
    onnx_serve::memory::limit_arenas(args.workers());
    let (auth, cors) = match (args.auth(), args.cors()) {
        (Ok(auth), Ok(cors)) => (auth, cors),
        (Err(e), _) | (_, Err(e)) => return cannot_start(e),
    };
    let workers = Workers::new(args.workers(), args.queue);
    let app = App::new(name, workers)
        .with_version(source.version())
        .with_auth(auth)
        .with_cors(cors);
    let app = Arc::new(app);
    let server = match Server::start(app.clone(), listener, settings) {
        Ok(server) => server,
        Err(e) => return cannot_start(format!("cannot start the server: {e}")),
    };
    info!(
        "onnx-serve {} listening on http://{} ({} workers, queue {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        args.workers(),
        args.queue
    );
    log_access_rules(&app);
    if let Err(e) = forward_signals(server.events()) {
        return cannot_start(format!("cannot install signal handlers: {e}"));
    }

    let model = match source.load() {
        Ok(model) => model,
        Err(e) => return cannot_start(e),
    };
    let model = match model.with_execution(args.execution()) {
        Ok(model) => model,
        Err(e) => return cannot_start(e),
    };
    log_signature(&app.model_name, &source.origin(), &model);
    log_execution(args);
    // What loading parsed and threw away (the protobuf, tract's first forms of the graph).
    // Before the model is set, so that memory is already back when /readyz turns 200.
    onnx_serve::memory::release_free_memory();
    app.set_model(model);
    info!("ready");

    match server.serve_until_shutdown(args.shutdown_timeout) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(fatal) => {
            error!("{fatal}; exiting so that a supervisor can restart the server");
            ExitCode::FAILURE
        }
    }
}

/// Each connection takes two file descriptors: the usual soft limit of 1024 would let a few
/// hundred idle clients stop the listener (src/limits.rs).
fn raise_open_files_limit() {
    match onnx_serve::limits::raise_open_files_limit() {
        Ok(files) if files.now > files.before => {
            info!(
                "open-file limit raised from {} to {}",
                files.before, files.now
            )
        }
        Ok(files) => info!("open-file limit: {}", files.now),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
}

fn log_signature(name: &str, origin: &str, model: &Model) {
    use onnx_serve::signature::describe_all as describe;
    let signature = model.signature();
    info!(
        "model {name:?} loaded from {} in {} ms; inputs: {}; outputs: {}",
        origin,
        model.load_time().as_millis(),
        describe(&signature.inputs),
        describe(&signature.outputs)
    );
}

fn log_execution(args: &onnx_serve::config::ServeArgs) {
    if args.intra_op_threads > 1 {
        info!(
            "a run alone on the server may use {} threads (--intra-op-threads)",
            args.intra_op_threads
        );
    }
    if args.max_batch_size > 0 {
        info!(
            "dynamic batching: up to {} rows per run, waiting up to {} us for more",
            args.max_batch_size, args.batch_delay_us
        );
    }
}

/// Who may call, as the operator should know it (never the key itself).
fn log_access_rules(app: &App) {
    if app.auth.is_required() {
        info!(
            "an API key is required on every route but /healthz, /readyz and the V2 health routes"
        );
    }
    match &app.cors {
        Cors::Off => {}
        Cors::AnyOrigin => info!("CORS: pages from any origin may call the API"),
        Cors::Origins(origins) => info!("CORS: pages from {} may call the API", origins.join(", ")),
    }
}

/// SIGTERM and SIGINT start the drain.
fn forward_signals(events: std::sync::mpsc::Sender<Event>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                let _ = events.send(Event::Shutdown(name));
            }
        })?;
    Ok(())
}
