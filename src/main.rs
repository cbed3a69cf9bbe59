//! `onnx-serve`: the command line is in `cli/`.

fn main() -> std::process::ExitCode {
    onnx_serve::cli::main()
}
