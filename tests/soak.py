#!/usr/bin/env python3
"""Soak test: the real server under moderate mixed load for a while, watched from outside.

    python3 tests/soak.py [--binary target/release/onnx-serve] [--duration 600]

Clients send valid requests (/predict, V2 infer, health) and invalid ones (malformed JSON,
wrong shape, unknown route, wrong method, body over the limit), some on kept-alive
connections and some on a new connection each time. Every few seconds the server's
resident memory, threads and open file descriptors are read from /proc. It fails (exit 1)
when a valid request gets anything but 200, an invalid one anything but its 4xx, or when
memory, threads or descriptors grow from the first half of the run to the second.
Standard library only. CI runs it for a minute; docs/robustness.md records the last 10-minute run.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary):
    server = subprocess.Popen(
        [binary, "--port", "0", "--max-body", "64KiB", "--model", os.path.join(REPO, "model.onnx")],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "RUST_LOG": "info,onnx_serve::access=warn"},
    )
    ready = threading.Event()
    address = []

    def read_log():
        for line in server.stderr:
            text = line.decode(errors="replace")
            match = re.search(r"listening on http://(\S+)", text)
            if match:
                address.append(match.group(1))
            if " ready" in text:
                ready.set()
            if "ERROR" in text or "panicked" in text:
                print("server:", text.rstrip(), file=sys.stderr)

    threading.Thread(target=read_log, daemon=True).start()
    if not ready.wait(30):
        server.kill()
        sys.exit("the server did not start")
    host, port = address[0].rsplit(":", 1)
    return server, host, int(port)


def sample(pid):
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kib, threads, fds


def requests():
    """(name, method, path, headers, body, expected status) for each kind of request."""
    with open(os.path.join(REPO, "tests/fixtures/digit.json"), "rb") as f:
        digit = f.read()
    row = json.loads(digit)["inputs"][0]
    v2 = json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": row}]}
    ).encode()
    json_headers = {"Content-Type": "application/json"}
    return [
        ("predict", "POST", "/predict", json_headers, digit, 200),
        ("v2 infer", "POST", "/v2/models/model/infer", json_headers, v2, 200),
        ("healthz", "GET", "/healthz", {}, None, 200),
        ("predict", "POST", "/predict", json_headers, digit, 200),
        ("malformed JSON", "POST", "/predict", json_headers, b'{"inputs": [[1, 2', 400),
        ("wrong shape", "POST", "/predict", json_headers, b'{"inputs": [[1, 2, 3]]}', 400),
        ("unknown route", "GET", "/nope", {}, None, 404),
        ("wrong method", "DELETE", "/predict", {}, None, 405),
        ("over --max-body", "POST", "/predict", json_headers, b" " * (65 * 1024), 413),
    ]


class Client(threading.Thread):
    def __init__(self, host, port, keep_alive, until, pause, index):
        super().__init__(daemon=True)
        self.host, self.port, self.keep_alive = host, port, keep_alive
        self.until, self.pause, self.index = until, pause, index
        self.counts = {}
        self.failures = []

    def run(self):
        kinds = requests()
        connection = None
        i = self.index
        while time.monotonic() < self.until:
            name, method, path, headers, body, expected = kinds[i % len(kinds)]
            i += 1
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                status = response.status
                if not self.keep_alive or response.getheader("Connection") == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                status, data = None, str(e).encode()
                connection.close()
                connection = None
            key = (name, status)
            self.counts[key] = self.counts.get(key, 0) + 1
            if status != expected and len(self.failures) < 20:
                self.failures.append(f"{name}: expected {expected}, got {status}: {data[:200]!r}")
            time.sleep(self.pause)


def grew(label, first, second, slack):
    """True (and says so) when the second half's typical value is above the first's."""
    before, after = statistics.median(first), statistics.median(second)
    if after > before + slack:
        print(f"FAIL {label} grew: median {before} in the first half, {after} in the second")
        return True
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default=os.path.join(REPO, "target/release/onnx-serve"))
    parser.add_argument("--duration", type=float, default=600, help="seconds (default 600)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.01, help="seconds between requests")
    args = parser.parse_args()

    server, host, port = start(args.binary)
    started = time.monotonic()
    until = started + args.duration
    clients = [
        Client(host, port, keep_alive=(k % 2 == 0), until=until, pause=args.pause, index=k)
        for k in range(args.clients)
    ]
    for client in clients:
        client.start()
    samples = []
    period = max(1.0, args.duration / 60)
    while time.monotonic() < until:
        samples.append(sample(server.pid))
        time.sleep(period)
    for client in clients:
        client.join()
    samples.append(sample(server.pid))
    alive = server.poll() is None
    server.terminate()
    code = server.wait(30)

    counts = {}
    for client in clients:
        for key, n in client.counts.items():
            counts[key] = counts.get(key, 0) + n
    total = sum(counts.values())
    failures = [f for client in clients for f in client.failures]
    # The first tenth is warm-up: pools and caches fill.
    steady = samples[max(1, len(samples) // 10):]
    half = len(steady) // 2
    first, second = steady[:half], steady[half:]
    rss = [s[0] for s in samples]
    print(
        f"soak: {args.duration:.0f} s, {args.clients} clients, {total} requests "
        f"({total / args.duration:.0f}/s): "
        + ", ".join(f"{name} {status}: {n}" for (name, status), n in sorted(counts.items(), key=str))
    )
    print(
        f"soak: RSS {rss[0] / 1024:.1f} -> {rss[-1] / 1024:.1f} MiB (max {max(rss) / 1024:.1f}); "
        f"threads {samples[0][1]} -> {samples[-1][1]} (max {max(s[1] for s in samples)}); "
        f"fds {samples[0][2]} -> {samples[-1][2]} (max {max(s[2] for s in samples)}); "
        f"exit code after SIGTERM {code}"
    )
    failed = False
    for failure in failures:
        print("FAIL", failure)
        failed = True
    if not alive:
        print("FAIL the server died during the run")
        failed = True
    if code != 0:
        print(f"FAIL exit code {code} after SIGTERM")
        failed = True
    if first and second:
        # Slack for what moves with the load at any instant: a few MiB of buffers, the
        # request and connection threads (two descriptors each) of the clients in flight.
        failed |= grew("resident memory (KiB)", [s[0] for s in first], [s[0] for s in second], 4096)
        failed |= grew("threads", [s[1] for s in first], [s[1] for s in second], 2 * args.clients)
        failed |= grew("file descriptors", [s[2] for s in first], [s[2] for s in second], 4 * args.clients)
    print("soak: FAILED" if failed else "soak: passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
