//! Overload and deploys: load shedding at four times the sustainable rate, and SIGTERM
//! while clients are sending. Both use slow.onnx, whose runs take tens of milliseconds, and
//! bounded load generators (fixed client counts, fixed durations).

use crate::common;

use common::{RawResponse, Server, fixture_model, raw_predict, try_read_response};
use serde_json::json;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The two tests time the same slow model against its unloaded speed: run alone, neither
/// measures the other's load.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn slow_request() -> Vec<u8> {
    let body = serde_json::to_vec(&json!({"inputs": [vec![0.25; 1024]]})).unwrap();
    raw_predict(&body)
}

fn connect(server: &Server) -> TcpStream {
    let stream = server.connect();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sequential requests on one connection: the median time of one.
fn unloaded_median(server: &Server, samples: usize) -> Duration {
    let mut stream = connect(server);
    let request = slow_request();
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let started = Instant::now();
            let reply = common::exchange(&mut stream, &request);
            assert_eq!(reply.status, 200);
            started.elapsed()
        })
        .collect();
    times.sort();
    times[samples / 2]
}

fn send(stream: &mut TcpStream, request: &[u8]) -> Option<RawResponse> {
    stream.write_all(request).ok()?;
    try_read_response(stream)
}

fn median(mut times: Vec<Duration>) -> Duration {
    assert!(!times.is_empty());
    times.sort();
    times[times.len() / 2]
}

/// An open-loop load: request `i` is due at `i * interval` for `duration`, whatever became
/// of the earlier ones, sent by a fixed set of clients on kept-alive connections. Returns
/// the status and time of every request.
fn open_loop(server: &Server, interval: Duration, duration: Duration) -> Vec<(u16, Duration)> {
    const CLIENTS: usize = 16;
    let total = (duration.as_secs_f64() / interval.as_secs_f64()) as usize;
    let results = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now() + Duration::from_millis(50);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let results = results.clone();
            let mut stream = connect(server);
            let addr = server.addr;
            thread::spawn(move || {
                let request = slow_request();
                for i in (k..total).step_by(CLIENTS) {
                    let due = start + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    let reply = match send(&mut stream, &request) {
                        Some(reply) => reply,
                        // An idle connection closed by --keep-alive-timeout: a new one.
                        None => {
                            stream = TcpStream::connect(addr).unwrap();
                            send(&mut stream, &request).expect("an answer")
                        }
                    };
                    results.lock().unwrap().push((reply.status, sent.elapsed()));
                    if reply.header("Connection").as_deref() == Some("close") {
                        stream = TcpStream::connect(addr).unwrap();
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    Arc::try_unwrap(results).unwrap().into_inner().unwrap()
}

#[test]
fn at_four_times_the_sustainable_rate_the_excess_is_refused_quickly_and_the_rest_served_on_time() {
    let _alone = one_at_a_time();
    // One worker and no queue: a request is taken only when it can start computing at once.
    // With a deeper queue every accepted request would first wait for those ahead of it.
    let server = Server::builder()
        .args([
            "--model",
            &fixture_model("slow.onnx"),
            "--workers",
            "1",
            "--queue",
            "0",
        ])
        .start();
    unloaded_median(&server, 2); // warm-up
    let unloaded = unloaded_median(&server, 7);
    // One worker sustains one request per `unloaded`; send four in that time, for long
    // enough that a few dozen are accepted.
    let duration = (unloaded * 30).clamp(Duration::from_secs(3), Duration::from_secs(20));
    let results = open_loop(&server, unloaded / 4, duration);

    let accepted: Vec<Duration> = results.iter().filter(|r| r.0 == 200).map(|r| r.1).collect();
    let refused: Vec<Duration> = results.iter().filter(|r| r.0 == 503).map(|r| r.1).collect();
    let summary = format!(
        "unloaded {unloaded:?}; {} requests in {duration:?}: {} accepted (median {:?}), {} refused (median {:?})",
        results.len(),
        accepted.len(),
        accepted
            .iter()
            .copied()
            .min()
            .map(|_| median(accepted.clone())),
        refused.len(),
        refused
            .iter()
            .copied()
            .min()
            .map(|_| median(refused.clone())),
    );
    println!("{summary}");
    assert_eq!(accepted.len() + refused.len(), results.len(), "{summary}");
    // The worker stays busy: at least half of what it can do is done.
    let capacity = duration.as_secs_f64() / unloaded.as_secs_f64();
    assert!(accepted.len() as f64 >= capacity / 2.0, "{summary}");
    assert!(refused.len() >= results.len() / 2, "{summary}");
    assert!(median(accepted) <= unloaded * 2, "{summary}");
    // Refused at once: without waiting for the model.
    assert!(median(refused) < unloaded / 2, "{summary}");

    // The load falls: the next requests are served as if nothing happened.
    let after = unloaded_median(&server, 5);
    assert!(
        after <= unloaded * 2,
        "after the load: {after:?}; {summary}"
    );
}

/// What became of one request during the shutdown test.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// A whole response with this status.
    Answered(u16, bool),
    /// The connection closed before any byte of an answer: the server never took it.
    NotTaken,
    /// Part of a response, then the connection ended: never acceptable.
    Cut(String),
}

fn fate(stream: &mut TcpStream, request: &[u8]) -> Fate {
    use std::io::Read;
    if stream.write_all(request).is_err() {
        return Fate::NotTaken;
    }
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) => {}
        _ => return Fate::NotTaken,
    }
    let mut rest = Vec::new();
    let mut head = vec![first[0]];
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return Fate::Cut(String::from_utf8_lossy(&head).into_owned()),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    rest.resize(length, 0);
    if let Err(e) = stream.read_exact(&mut rest) {
        return Fate::Cut(format!("{head} then {e}"));
    }
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    Fate::Answered(status, head.contains("Connection: close"))
}

#[test]
fn sigterm_while_32_clients_send_lets_every_accepted_request_finish_then_exits_0() {
    let _alone = one_at_a_time();
    let mut server = Server::builder()
        .args([
            "--model",
            &fixture_model("slow.onnx"),
            "--workers",
            "2",
            "--shutdown-timeout",
            "120s",
        ])
        .start();
    let signalled = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (addr, signalled) = (server.addr, signalled.clone());
            thread::spawn(move || {
                let request = slow_request();
                let mut fates = Vec::new();
                let Ok(mut stream) = TcpStream::connect(addr) else {
                    return fates;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(120)))
                    .unwrap();
                // Requests back to back until the server closes this connection; then
                // a new connection, until one is refused after the signal.
                for _ in 0..1000 {
                    let fate = fate(&mut stream, &request);
                    let closed = !matches!(fate, Fate::Answered(_, false));
                    fates.push(fate);
                    if closed {
                        if signalled.load(Ordering::SeqCst) {
                            break;
                        }
                        match TcpStream::connect(addr) {
                            Ok(s) => stream = s,
                            Err(_) => break,
                        }
                    }
                }
                fates
            })
        })
        .collect();
    // Every client has a request in flight or queued.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("POST /predict 200") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200));
    let sent_at = Instant::now();
    signalled.store(true, Ordering::SeqCst);
    server.signal("TERM");
    let status = server
        .wait_exit(Duration::from_secs(150))
        .expect("the server exits");
    let drained_in = sent_at.elapsed();
    let fates: Vec<Fate> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();

    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(drained_in < Duration::from_secs(120));
    let cut: Vec<&Fate> = fates.iter().filter(|f| matches!(f, Fate::Cut(_))).collect();
    assert!(cut.is_empty(), "responses cut short: {cut:?}");
    let answered = fates
        .iter()
        .filter(|f| matches!(f, Fate::Answered(200, _)))
        .count();
    let odd: Vec<&Fate> = fates
        .iter()
        .filter(|f| matches!(f, Fate::Answered(s, _) if *s != 200 && *s != 503))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    // Every prediction the server logged as answered reached its client whole.
    let logged = server.log().matches("POST /predict 200").count();
    assert_eq!(logged, answered, "{}", server.log());
    assert!(
        !server.log().contains("writing the answer failed"),
        "{}",
        server.log()
    );
    // The requests queued when the signal came were many: they all finished.
    assert!(answered >= 32, "only {answered} answered: {fates:?}");
    println!(
        "{answered} answered, drained in {drained_in:?}; fates: {} not taken",
        fates.iter().filter(|f| **f == Fate::NotTaken).count()
    );
}

/// A new connection that has sent `request`.
fn sent(server: &Server, request: &[u8]) -> TcpStream {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    stream
}

fn expect_200(stream: &mut TcpStream) {
    let reply = try_read_response(stream).expect("an answer");
    let body = String::from_utf8_lossy(&reply.body);
    assert_eq!(reply.status, 200, "{body}");
}

/// Polls `/metrics` until `done(workers busy, requests waiting)`, for up to 10 s.
fn wait_for_workers(server: &Server, done: impl Fn(f64, f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let busy = server.metric("onnx_serve_workers_busy");
        let waiting = server.metric("onnx_serve_queue_waiting");
        if done(busy, waiting) {
            return;
        }
        assert!(Instant::now() < deadline, "busy {busy}, waiting {waiting}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The server's log once `text` occurs in it `count` times, or after 5 s: the log arrives
/// through a pipe, so the last lines may need a moment.
fn log_once_it_has(server: &Server, text: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.matches(text).count() >= count || Instant::now() >= deadline {
            return log;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn requests_whose_clients_left_while_they_waited_are_not_run() {
    let _alone = one_at_a_time();
    let server = Server::builder()
        .args(["--model", &fixture_model("slow.onnx"), "--workers", "1"])
        .start();
    let request = slow_request();
    let send_one = || sent(&server, &request);
    // Five requests keep the one worker busy for five runs (tens of milliseconds each):
    // four clients that send theirs and leave, as clients that time out do, once three or
    // more are in line, each wait for three runs or more.
    let mut waited_for: Vec<TcpStream> = (0..5).map(|_| send_one()).collect();
    wait_for_workers(&server, |busy, waiting| busy == 1.0 && waiting >= 3.0);
    for _ in 0..3 {
        drop(send_one());
    }
    // The fourth only half-closes: gone too, but it reads why, and the connection closes.
    let mut half_closed = send_one();
    half_closed.shutdown(std::net::Shutdown::Write).unwrap();
    let mut last = send_one();
    for stream in waited_for.iter_mut().chain([&mut last]) {
        expect_200(stream);
    }

    let log = log_once_it_has(&server, "POST /predict 499", 4);
    assert_eq!(log.matches("POST /predict 499").count(), 4, "{log}");
    let reply = try_read_response(&mut half_closed).expect("the half-closed client's answer");
    assert_eq!(reply.status, 499);
    assert!(reply.error().contains("not run"), "{}", reply.error());
    assert_eq!(reply.header("Connection").as_deref(), Some("close"));
    assert!(try_read_response(&mut half_closed).is_none());
    let runs = server.metric("onnx_serve_inference_duration_seconds_count");
    assert_eq!(runs, 6.0, "only the requests someone waited for ran");
}

#[test]
fn a_full_queue_makes_room_for_a_new_request_when_waiting_clients_have_left() {
    let _alone = one_at_a_time();
    let server = Server::builder()
        .args(["--model", &fixture_model("slow.onnx"), "--workers", "1"])
        .args(["--queue", "6"])
        .start();
    let request = slow_request();
    let send_one = || sent(&server, &request);
    // One run and four waiting clients keep the worker busy for five runs; two more clients
    // fill the queue, and will leave.
    let mut waited_for: Vec<TcpStream> = (0..5).map(|_| send_one()).collect();
    wait_for_workers(&server, |busy, waiting| busy == 1.0 && waiting == 4.0);
    let leaving: Vec<TcpStream> = (0..2).map(|_| send_one()).collect();
    wait_for_workers(&server, |_, waiting| waiting == 6.0);
    // While every waiting client is there, a newcomer is refused.
    let mut refused = send_one();
    let reply = try_read_response(&mut refused).expect("an answer");
    assert_eq!(reply.status, 503, "{}", reply.error());
    // Once two have left, a newcomer takes a place and is served.
    drop(leaving);
    thread::sleep(Duration::from_millis(40));
    let mut newcomer = send_one();
    for stream in waited_for.iter_mut().chain([&mut newcomer]) {
        expect_200(stream);
    }
    let runs = server.metric("onnx_serve_inference_duration_seconds_count");
    assert_eq!(runs, 6.0, "the clients that left were not run");
    let log = log_once_it_has(&server, "POST /predict 499", 2);
    assert_eq!(log.matches("POST /predict 499").count(), 2, "{log}");
}

#[test]
fn clients_that_asked_to_close_after_the_answer_still_get_it_after_a_long_wait() {
    // tiny_http shuts down our reading side of a connection whose request says
    // `Connection: close` (or is HTTP/1.0) as soon as it has read a small body: such a
    // client must not look gone. wide.onnx takes a 334-byte body and tens of milliseconds.
    let _alone = one_at_a_time();
    let server = Server::builder()
        .args(["--model", &fixture_model("wide.onnx"), "--workers", "1"])
        .start();
    let body = serde_json::to_vec(&json!({"inputs": [vec![0.5; 64]]})).unwrap();
    let keep_alive = raw_predict(&body);
    let head_end = keep_alive
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap();
    let mut close = keep_alive[..head_end].to_vec();
    close.extend_from_slice(b"\r\nConnection: close");
    close.extend_from_slice(&keep_alive[head_end..]);
    let http_1_0 = String::from_utf8(keep_alive.clone())
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1)
        .into_bytes();
    let send = |request: &[u8]| sent(&server, request);
    // Four runs ahead of them: each waits for three at least.
    let mut ahead: Vec<TcpStream> = (0..4).map(|_| send(&keep_alive)).collect();
    wait_for_workers(&server, |busy, waiting| busy == 1.0 && waiting >= 3.0);
    let mut told_close = [send(&close), send(&http_1_0)];
    for stream in ahead.iter_mut().chain(told_close.iter_mut()) {
        expect_200(stream);
    }
    let log = server.log();
    assert!(!log.contains(" 499 "), "{log}");
    assert_eq!(
        server.metric("onnx_serve_inference_duration_seconds_count"),
        6.0
    );
}
