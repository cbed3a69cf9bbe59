//! The real `onnx-serve` binary, started on a free port, and ways to talk to it: an
//! independent HTTP client (ureq) for ordinary requests, raw sockets for the rest.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

pub fn fixture_model(name: &str) -> String {
    fixture(&format!("models/{name}")).display().to_string()
}

pub fn bundled_model() -> String {
    repo().join("model.onnx").display().to_string()
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_onnx-serve")
}

/// A running server process; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
    /// Copies the server's stderr into `log`; ends when the process has exited.
    log_reader: Option<thread::JoinHandle<()>>,
    agent: ureq::Agent,
}

pub struct Builder {
    args: Vec<String>,
    env: Vec<(String, String)>,
    wait_ready: bool,
    shell: Option<String>,
}

impl Builder {
    pub fn arg(mut self, arg: impl Into<String>) -> Builder {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Builder {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Builder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Run these shell commands first, in the shell that then execs the server: limits
    /// such as `ulimit -Sn 64`.
    pub fn shell_first(mut self, commands: &str) -> Builder {
        self.shell = Some(commands.into());
        self
    }

    /// Return as soon as the server listens, before the model is loaded.
    pub fn no_wait(mut self) -> Builder {
        self.wait_ready = false;
        self
    }

    pub fn start(self) -> Server {
        let mut command = match &self.shell {
            Some(commands) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("{commands} && exec \"$0\" \"$@\""))
                    .arg(binary());
                sh
            }
            None => Command::new(binary()),
        };
        command.args(&self.args).current_dir(repo());
        let port_from_env = self
            .env
            .iter()
            .any(|(k, _)| k == "PORT" || k == "ONNX_SERVE_PORT");
        if !self.args.iter().any(|a| a == "--port") && !port_from_env {
            command.args(["--port", "0"]);
        }
        command
            .env_remove("PORT")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the onnx-serve binary starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log_writer = log.clone();
        let log_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = addr_tx.send(addr.parse::<SocketAddr>().ok());
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!(
                    "the server did not start; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            // Under the shortest --keep-alive-timeout tests use (1 s): a pooled connection
            // is never reused just as the server closes it.
            .max_idle_age(Duration::from_millis(500))
            .build()
            .into();
        let server = Server {
            child: Some(child),
            addr,
            log,
            log_reader: Some(log_reader),
            agent,
        };
        if self.wait_ready {
            server.wait_until_ready(Duration::from_secs(30));
            // /readyz can answer 200 before this side has read the start-up lines from the
            // pipe; tests read them, so wait for the last one ("ready", text or JSON).
            server.wait_until_logged(Duration::from_secs(10), |log| {
                log.contains("] ready") || log.contains("\"ready\"")
            });
        }
        server
    }
}

impl Server {
    pub fn builder() -> Builder {
        Builder {
            args: Vec::new(),
            env: Vec::new(),
            wait_ready: true,
            shell: None,
        }
    }

    /// The bundled digits model.
    pub fn digits() -> Server {
        Server::builder().start()
    }

    pub fn with_model(name: &str) -> Server {
        Server::builder()
            .args(["--model", &fixture_model(name)])
            .start()
    }

    pub fn wait_until_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.get("/readyz").status == 200 {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the server was not ready after {timeout:?}; its log:\n{}",
            self.log()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Reply {
        Reply::from(
            self.agent
                .get(self.url(path))
                .call()
                .expect("GET succeeds at the HTTP level"),
        )
    }

    /// The value of an unlabelled sample in `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")));
        let line = line.unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"));
        line.trim().parse().unwrap()
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .body(body.to_vec())
            .unwrap();
        Reply::from(
            self.agent
                .run(request)
                .expect("the request succeeds at the HTTP level"),
        )
    }

    pub fn post(&self, path: &str, body: impl AsRef<[u8]>) -> Reply {
        let response = self
            .agent
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .send(body.as_ref())
            .expect("POST succeeds at the HTTP level");
        Reply::from(response)
    }

    /// `POST` with extra headers, e.g. `Inference-Header-Content-Length`.
    pub fn post_with(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.agent.post(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::from(request.send(body).expect("POST succeeds at the HTTP level"))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, serde_json::to_vec(body).unwrap())
    }

    /// `POST /predict` with `{"inputs": inputs}`.
    pub fn predict(&self, inputs: Value) -> Reply {
        self.post_json("/predict", &serde_json::json!({ "inputs": inputs }))
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_until_logged(timeout, |log| log.contains(needle))
    }

    /// Waits until `found` holds of the log so far; false after `timeout`.
    fn wait_until_logged(&self, timeout: Duration, found: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if found(&self.log()) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (killing it after `timeout`); then `log` holds all it
    /// wrote.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        // The pipe ends at exit: the reader has then copied the last lines.
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
        status
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// A raw connection to the server, with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(mut response: ureq::http::Response<ureq::Body>) -> Reply {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("the body is readable");
        Reply {
            status,
            headers,
            body,
        }
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The error message of a `{"error": "..."}` body, after checking the error contract:
    /// the exact content type and a body that is exactly that object.
    pub fn error(&self) -> String {
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "error content type"
        );
        let body = self.json();
        let object = body.as_object().expect("the error body is an object");
        let message = object
            .get("error")
            .and_then(Value::as_str)
            .expect("the error body has \"error\"");
        message.to_owned()
    }

    pub fn outputs(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        self.json()["outputs"].clone()
    }
}

/// A raw HTTP/1.1 exchange on an open connection: writes `request` and reads one response.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> RawResponse {
    stream.write_all(request).unwrap();
    read_response(stream)
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The error message, after checking the error contract (see `Reply::error`).
    pub fn error(&self) -> String {
        assert_eq!(
            self.header("Content-Type").as_deref(),
            Some("application/json")
        );
        let body = self.json();
        body.as_object().expect("the error body is an object")["error"]
            .as_str()
            .expect("the error body has \"error\"")
            .to_owned()
    }
}

/// Reads one response, or `None` when the connection closes or times out first.
pub fn try_read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    read_response_or_error(stream).ok()
}

/// A loopback port that was free a moment ago, for a server that must be told its port.
///
/// Taken below the system's ephemeral range, not from `bind(0)`: the tests' own client
/// connections get their local ports from that range, and one of them could take the port
/// between this check and the server's bind. Each test process walks its own stretch
/// (from its pid), so two processes rarely try the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_start.saturating_sub(12_000).max(1024);
    let span = ephemeral_start.saturating_sub(low);
    if span == 0 {
        // Nothing below the ephemeral range to use: take one from it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        return listener.local_addr().unwrap().port();
    }
    let offset = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span {
        let port = low + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{ephemeral_start}");
}

/// Runs `client(i)` for i in 0..n, each on its own thread, all released at once, and
/// returns their results in order. A client that panics fails the caller with its message.
pub fn concurrent_clients<T: Send>(n: usize, client: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let start = Barrier::new(n);
    thread::scope(|scope| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (start, client) = (&start, &client);
                scope.spawn(move || {
                    start.wait();
                    client(i)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The bytes of `POST /predict` with `body` and its Content-Length, for raw sockets.
pub fn raw_predict(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Reads one response (head, then a Content-Length body).
pub fn read_response(stream: &mut TcpStream) -> RawResponse {
    read_response_or_error(stream).unwrap_or_else(|e| panic!("reading a response failed: {e}"))
}

fn read_response_or_error(stream: &mut TcpStream) -> std::io::Result<RawResponse> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            let seen = String::from_utf8_lossy(&head).into_owned();
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {seen:?}"),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).map_err(std::io::Error::other)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        })
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(RawResponse { status, head, body })
}

/// The probabilities of one digits row as f64.
pub fn row(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

pub fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
