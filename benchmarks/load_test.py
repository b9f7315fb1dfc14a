"""Many users at once: N gradio_client users x M detect calls against the app on 127.0.0.1.

Usage: python benchmarks/load_test.py [--clients 20] [--calls 10] [--write-readme]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from benchmarks.readme import markdown_table, replace_section  # noqa: E402


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
    from gradio_client import Client, handle_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    images = sorted((ROOT / "examples" / "images").glob("*.png"))
    memory_before = rss_mb()
    latencies, errors = [], []

    def user(index):
        try:
            client = Client(url, verbose=False)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
            return
        for call in range(args.calls):
            started = time.perf_counter()
            try:
                client.predict(handle_file(str(images[(index + call) % len(images)])), args.model, 99.0,
                               api_name="/detect")
                latencies.append(time.perf_counter() - started)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
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
    print(table)
    for error in errors[:5]:
        print("error:", error)
    if args.write_readme:
        replace_section("load-test", table + f"\n\n`python benchmarks/load_test.py --clients {args.clients} "
                        f"--calls {args.calls} --write-readme`, {os.cpu_count()} CPU cores, app and "
                        "clients in one process.")
    sys.exit(1 if errors or lost else 0)


if __name__ == "__main__":
    main()
