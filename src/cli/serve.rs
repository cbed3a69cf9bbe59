//! Serving: bind, start answering (503 on predictions until the model is loaded), load the
//! model, decide its classes and how it takes images, warm it up, turn ready, and drain on
//! SIGTERM or SIGINT. `/healthz` answers 200 all along.

use super::{Cli, ServeArgs, cannot_start, source::Source};
use crate::api::{self, App, Images, Serving};
use crate::engine::Model;
use crate::http::{self, Cors, Event, Server};
use crate::ops::memory;
use log::{error, info};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::Sender;

pub fn run(cli: &Cli) -> ExitCode {
    let args = &cli.serve;
    let source = match Source::choose(cli.model.as_ref()) {
        Ok(source) => source,
        Err(e) => return cannot_start(e),
    };
    let address = match args.address() {
        Ok(address) => address,
        Err(e) => return cannot_start(e),
    };
    raise_open_files_limit();
    let settings = args.settings();
    let listener = match http::bind(address, &settings) {
        Ok(listener) => listener,
        Err(e) => return cannot_start(format!("cannot listen on {address}: {e}")),
    };
    let name = args
        .model_name
        .clone()
        .unwrap_or_else(|| source.name().to_owned());
    memory::limit_arenas(args.workers());
    let (auth, cors) = match (args.auth(), args.cors()) {
        (Ok(auth), Ok(cors)) => (auth, cors),
        (Err(e), _) | (_, Err(e)) => return cannot_start(e),
    };
    let key_required = auth.is_required();
    let cors_rules = cors.clone();
    let app = App::new(name)
        .with_version(source.version())
        .with_auth_required(auth.is_required());
    let app = Arc::new(app);
    let draining = app.draining();
    let service = api::service(app.clone(), auth, cors);
    let server = match Server::start(service, listener, settings, draining) {
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
    log_access_rules(key_required, &cors_rules);
    if let Err(e) = forward_signals(server.events()) {
        return cannot_start(format!("cannot install signal handlers: {e}"));
    }

    let model = match source.load(&cli.input_shapes) {
        Ok(model) => model,
        Err(e) => return cannot_start(e),
    };
    let model = match model.with_execution(args.execution()) {
        Ok(model) => model,
        Err(e) => return cannot_start(e),
    };
    log_signature(&app.model_name, &source.origin(), &model);
    log_execution(args);
    let serving = match serving(cli, model) {
        Ok(serving) => serving,
        Err(e) => return cannot_start(e),
    };
    warm_up(&serving.model, args.warmup);
    // What loading parsed and threw away (the protobuf, tract's first forms of the graph).
    // Before the model is set, so that memory is already back when /readyz turns 200.
    memory::release_free_memory();
    app.install(serving);
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

/// The model with its classes (`--labels`, or what it carries) and its image pipeline
/// (`--image-*`), checked now so that a flag that cannot apply stops start-up.
pub(super) fn serving(cli: &Cli, model: Model) -> Result<Serving, String> {
    let file = match &cli.labels {
        Some(path) => Some(api::LabelsFile {
            labels: crate::tensor::labels::Labels::from_file(path)?,
            path: path.display().to_string(),
        }),
        None => None,
    };
    let classes = api::resolve_classes(&model, file, cli.labels_output.as_deref())?;
    let images = Images::for_model(model.signature(), &cli.serve.images())?;
    if let Some(classes) = &classes {
        info!(
            "{} class labels, from {}, name the classes of output '{}'",
            classes.labels.len(),
            classes.origin,
            model.signature().outputs[classes.output].name
        );
    }
    if let Some(pipeline) = images.pipeline() {
        let input = pipeline.input();
        let size = match (input.height, input.width) {
            (Some(h), Some(w)) => format!("resized to {w}x{h}"),
            _ => "at their own size".to_owned(),
        };
        info!(
            "/predict takes PNG and JPEG images for input '{}' ({size}, up to {} pixels)",
            input.name,
            pipeline.max_pixels()
        );
    }
    Ok(Serving {
        model,
        classes,
        images,
    })
}

/// `--warmup N`: N runs on zeros before readiness. A run that fails is logged, and the
/// server starts anyway: zeros are not every model's valid input (a detector whose sides
/// must be multiples of 32 fails on the 1x1 image the free sizes make), and a model that
/// cannot take them may still answer every real request.
fn warm_up(model: &Model, runs: u32) {
    if runs == 0 {
        return;
    }
    info!("warming up: {runs} run(s) of the model on zeros");
    let mut took = Vec::with_capacity(runs as usize);
    for run in 1..=runs {
        match model.warm_up() {
            Ok(time) => took.push(time),
            Err(e) => {
                log::warn!(
                    "warm-up run {run} of {runs} failed, so the server starts without it \
                     (requests of other shapes may run fine): {}",
                    api::run_error(e).message
                );
                return;
            }
        }
    }
    let ms = |d: &std::time::Duration| d.as_secs_f64() * 1e3;
    info!(
        "warm-up done: {runs} run(s) in {:.1} ms (the first {:.1} ms, the last {:.1} ms)",
        took.iter().map(ms).sum::<f64>(),
        took.first().map_or(0.0, ms),
        took.last().map_or(0.0, ms)
    );
}

/// Each connection takes two file descriptors: the usual soft limit of 1024 would let a few
/// hundred idle clients stop the listener.
fn raise_open_files_limit() {
    match http::raise_open_files_limit() {
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
    use crate::tensor::describe_all as describe;
    let signature = model.signature();
    info!(
        "model {name:?} loaded from {} in {} ms; inputs: {}; outputs: {}",
        origin,
        model.load_time().as_millis(),
        describe(&signature.inputs),
        describe(&signature.outputs)
    );
}

fn log_execution(args: &ServeArgs) {
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
fn log_access_rules(key_required: bool, cors: &Cors) {
    if key_required {
        info!(
            "an API key is required on every route but /healthz, /readyz and the V2 health routes"
        );
    }
    match cors {
        Cors::Off => {}
        Cors::AnyOrigin => info!("CORS: pages from any origin may call the API"),
        Cors::Origins(origins) => info!("CORS: pages from {} may call the API", origins.join(", ")),
    }
}

/// SIGTERM and SIGINT start the drain.
fn forward_signals(events: Sender<Event>) -> std::io::Result<()> {
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
