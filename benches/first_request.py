"""The first request's latency with and without --warmup: what the warm-up run saves.

For --warmup 0 and 1, starts TRIALS fresh servers (--workers 1) on MODEL; once /readyz is
200, times three POST /predict of BODY in a row on one kept-alive connection. Prints, per
setting, the median of each of the three latencies over the servers. Standard library only.

    python benches/first_request.py MODEL BODY CONTENT_TYPE [--trials N] [--binary PATH]

e.g. with SqueezeNet from ../shared/bench/make_models.py and a 224x224 JPEG:

    python benches/first_request.py ~/.cache/onnx-serve-bench/models/squeezenet.onnx \
        tests/fixtures/images/bench_224.jpg image/jpeg
"""

import argparse
import http.client
import os
import statistics
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def start(binary, model, warmup):
    """A server on a free port, ready; returns the process and its (host, port)."""
    process = subprocess.Popen(
        [binary, "--model", model, "--port", "0", "--warmup", str(warmup), "--workers", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found, address = threading.Event(), []

    def read_log():
        for line in process.stderr:  # drained for the life of the process
            if "listening on http://" in line and not address:
                address.append(line.split("listening on http://")[1].split()[0])
                found.set()

    threading.Thread(target=read_log, daemon=True).start()
    if not found.wait(30):
        process.kill()
        raise RuntimeError("the server did not start")
    host, port = address[0].rsplit(":", 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            connection.request("GET", "/readyz")
            reply = connection.getresponse()
            reply.read()
            if reply.status == 200:
                return process, (host, int(port))
        except OSError:
            pass
        time.sleep(0.005)
    process.kill()
    raise RuntimeError("the server was not ready")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("body")
    parser.add_argument("content_type")
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--binary", default=os.path.join(HERE, "..", "target/release/onnx-serve"))
    args = parser.parse_args()
    body = open(args.body, "rb").read()
    for warmup in (0, 1):
        firsts = []
        for _ in range(args.trials):
            process, (host, port) = start(args.binary, args.model, warmup)
            time.sleep(0.2)  # let start-up's last log lines and memory release settle
            connection = http.client.HTTPConnection(host, port, timeout=60)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                connection.request("POST", "/predict", body=body,
                                   headers={"Content-Type": args.content_type})
                reply = connection.getresponse()
                reply.read()
                assert reply.status == 200, reply.status
                times.append((time.perf_counter() - started) * 1e3)
            firsts.append(times)
            process.terminate()
            process.wait()
        medians = [statistics.median(t[i] for t in firsts) for i in range(3)]
        print(f"--warmup {warmup}: median of {args.trials} servers: first {medians[0]:.1f} ms, "
              f"second {medians[1]:.1f} ms, third {medians[2]:.1f} ms "
              f"(first requests: {', '.join(f'{t[0]:.1f}' for t in firsts)})")


if __name__ == "__main__":
    main()
