//! deploy/nginx.conf, run by the real nginx in front of the real server: the requests that
//! tiny_http cannot survive or answer are answered by nginx, and the server goes on.
//!
//! nginx comes from Debian's packages (`.ci/run` installs it). Without it the test is
//! skipped, except in CI, where that is a failure.

use crate::common;

use common::{Server, fixture, free_port, raw_predict, read_response};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Nginx {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// deploy/nginx.conf with its listening port, upstream and log paths changed, nothing else.
fn start_nginx(binary: &Path, upstream: SocketAddr) -> Nginx {
    let dir = std::env::temp_dir().join(format!("onnx-serve-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let port = free_port();
    let recipe = std::fs::read_to_string(common::repo().join("deploy/nginx.conf")).unwrap();
    let mut config = recipe
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
        .replace("server 127.0.0.1:8000;", &format!("server {upstream};"))
        .replace("/var/log/nginx/", &format!("{}/", dir.0.display()));
    assert_ne!(config, recipe);
    // Temporary files where this test may write, whoever runs it.
    config = config.replace(
        "http {\n",
        &format!(
            "http {{\n    client_body_temp_path {0}/body;\n    proxy_temp_path {0}/proxy;\n",
            dir.0.display()
        ),
    );
    let conf = dir.0.join("nginx.conf");
    std::fs::write(&conf, config).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(&conf)
        .arg("-g")
        .arg(format!(
            "daemon off; pid {}/nginx.pid; error_log stderr notice;",
            dir.0.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child,
        addr,
        _dir: dir,
    }
}

fn exchange(addr: SocketAddr, request: &[u8]) -> common::RawResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // nginx may answer (413) and close before it has read everything we send.
    let _ = stream.write_all(request);
    read_response(&mut stream)
}

fn predict_request() -> Vec<u8> {
    let body = std::fs::read(fixture("digit.json")).unwrap();
    raw_predict(&body)
}

fn assert_predicts(addr: SocketAddr, via: &str) {
    let reply = exchange(addr, &predict_request());
    assert_eq!(
        reply.status,
        200,
        "{via}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    let probabilities = common::row(&reply.json()["outputs"][0]);
    assert_eq!(common::argmax(&probabilities), 2, "{via}");
}

#[test]
fn nginx_in_front_answers_what_tiny_http_cannot_and_the_server_goes_on() {
    let Some(binary) = nginx_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is missing: .ci/run installs it from Debian's packages"
        );
        eprintln!("skipped: nginx is not installed (apt-get install nginx)");
        return;
    };
    let mut server = Server::digits();
    let nginx = start_nginx(&binary, server.addr);
    assert_predicts(nginx.addr, "through nginx");

    // A Content-Length of 1 PB: straight to onnx-serve this aborts the process
    // (tests/robustness.rs shows it); nginx refuses it on the header.
    let huge = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n";
    assert_eq!(exchange(nginx.addr, huge).status, 413);

    // Heads tiny_http would take in whole, of any size.
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let reply = exchange(nginx.addr, big_header.as_bytes());
    assert!(matches!(reply.status, 400 | 431 | 494), "{}", reply.head);

    // A request line on which tiny_http's connection thread deadlocks.
    let reply = exchange(nginx.addr, b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n");
    assert!(reply.status >= 400, "{}", reply.head);

    // onnx-serve's own answers pass through unchanged.
    let reply = exchange(nginx.addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(reply.status, 404);
    assert!(reply.error().contains("no route for /nope"));

    assert!(server.is_running(), "{}", server.log());
    assert_predicts(nginx.addr, "through nginx, after the hostile requests");
    assert_predicts(server.addr, "directly, after the hostile requests");
}
