//! `onnx-serve healthcheck`: one GET to a health route of a server on this host, exit 0 when
//! it answers 200. Made for container `HEALTHCHECK`s on an image with no shell and no curl.

use super::Cli;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Exit 0 when the server on --host/--port answers 200 on `path`, else log why and exit 1.
pub fn run(cli: &Cli, path: &str, timeout: Duration) -> ExitCode {
    let address = match cli.serve.address() {
        Ok(address) => address,
        Err(e) => return super::cannot_start(e),
    };
    match probe(address, path, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// GETs `path` from the server listening on `listen` (its `--host`/`--port`); `Ok` on a 200,
/// else one line saying what went wrong.
fn probe(listen: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let addr = reachable(listen);
    let url = format!("http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("{url}: cannot connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{url}: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: onnx-serve-healthcheck\r\n\
         Connection: close\r\n\r\n"
    )
    .map_err(|e| format!("{url}: cannot send the request: {e}"))?;
    let mut status_line = String::new();
    BufReader::new(stream.take(1024))
        .read_line(&mut status_line)
        .map_err(|e| format!("{url}: no answer: {e}"))?;
    // "HTTP/1.1 200 OK"
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    match status {
        "200" => Ok(()),
        "" => Err(format!("{url}: no HTTP answer")),
        other => Err(format!("{url}: status {other}")),
    }
}

/// A server listening on every address (`0.0.0.0`, `::`) is probed on the loopback address
/// of the same family.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen {
        SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server that answers `status_line` and records the request it got.
    fn answer_once(status_line: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = String::new();
            let mut reader = BufReader::new(socket.try_clone().unwrap());
            while reader.read_line(&mut request).unwrap() > 2 {}
            socket
                .write_all(format!("{status_line}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .unwrap();
            request
        });
        (addr, handle)
    }

    #[test]
    fn a_200_is_healthy_and_anything_else_is_not() {
        let (addr, server) = answer_once("HTTP/1.1 200 OK");
        let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
        assert_eq!(probe(listen, "/healthz", Duration::from_secs(5)), Ok(()));
        assert!(
            server
                .join()
                .unwrap()
                .starts_with("GET /healthz HTTP/1.1\r\n")
        );

        let (addr, _) = answer_once("HTTP/1.1 503 Service Unavailable");
        let error = probe(addr, "/readyz", Duration::from_secs(5)).unwrap_err();
        assert!(error.ends_with("/readyz: status 503"), "{error}");
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = probe(
            (Ipv4Addr::LOCALHOST, port).into(),
            "/healthz",
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
    }
}
