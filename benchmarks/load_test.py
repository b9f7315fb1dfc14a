"""Many users at once: N gradio_client users x M detect calls against the app on 127.0.0.1.

Usage: python -m benchmarks.load_test [--clients 20] [--calls 10] [--write-readme]
Reports errors, lost requests, latency percentiles, throughput and the server's memory.
"""

import argparse
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import ROOT
from benchmarks.readme import markdown_table, publish


def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()

    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    memory_before = rss_mb()
    started = time.perf_counter()
    latencies, errors = many_users(f"http://127.0.0.1:{port}/", args.clients, args.calls, args.model)
    elapsed = time.perf_counter() - started
    app.demo.close()

    asked = args.clients * args.calls
    lost = asked - len(latencies) - len(errors)
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies else (float("nan"),) * 3
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = markdown_table(
        ["clients x calls", "answered", "errors", "lost", "latency p50 / p95 / p99", "throughput",
         "memory before -> after (peak)"],
        [[f"{args.clients} x {args.calls} (`{args.model}` detect)", len(latencies), len(errors), lost,
          f"{p50:.2f} / {p95:.2f} / {p99:.2f} s", f"{len(latencies) / elapsed:.1f} calls/s",
          f"{memory_before:.0f} -> {rss_mb():.0f} MB ({peak:.0f} MB)"]])
    footnote = (f"`python -m benchmarks.load_test --clients {args.clients} --calls {args.calls} --write-readme`, "
                f"{os.cpu_count()} CPU cores, app and clients in one process.")
    publish("load-test", table, footnote, args.write_readme)
    for error in errors[:5]:
        print("error:", error)
    sys.exit(1 if errors or lost else 0)


def many_users(url, clients, calls, model):
    """(latencies in seconds, errors): `clients` gradio_client users at once, each detecting `calls`
    example images in turn."""
    from gradio_client import Client, handle_file

    images = sorted((ROOT / "examples" / "images").glob("*.png"))
    latencies, errors = [], []

    def user(index):
        try:
            client = Client(url, verbose=False)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
            return
        for call in range(calls):
            started = time.perf_counter()
            try:
                client.predict(handle_file(str(images[(index + call) % len(images)])), model, 99.0,
                               api_name="/detect")
                latencies.append(time.perf_counter() - started)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    threads = [threading.Thread(target=user, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


if __name__ == "__main__":
    main()
