"""Baseline for bench/run.ts: a local Jupyter kernel (Debian's python3-ipykernel), driven the
obvious way with jupyter_client's KernelManager and BlockingKernelClient.

Usage: jupyter_baseline.py KERNELS WARMUP PRINTS

Starts KERNELS kernels one after another (timing start-to-ready and the first print(1)), then runs
print(1) WARMUP + PRINTS times on the first, and prints one JSON line with the latencies (ms) and
the kernels' pids. It then keeps every kernel alive, idle, until stdin closes (so the bench can
measure their memory), and shuts them all down; also on SIGTERM or an error.
"""

import json
import signal
import sys
import time

from jupyter_client import KernelManager


def ms_since(t0):
    return (time.perf_counter() - t0) * 1000.0


def print1(kc):
    out = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive("print(1)", output_hook=hook, timeout=30)
    if reply["content"]["status"] != "ok" or "".join(out) != "1\n":
        raise RuntimeError("print(1) gave %r, %r" % (reply["content"], out))


def main():
    kernels, warmup, prints = (int(a) for a in sys.argv[1:4])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = []  # (KernelManager, client)
    try:
        result = {"start": [], "startPrint": [], "print": [], "pids": []}
        for _ in range(kernels):
            t0 = time.perf_counter()
            km = KernelManager(kernel_name="python3")
            km.start_kernel()
            kc = km.client()
            started.append((km, kc))
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            result["start"].append(ms_since(t0))
            print1(kc)
            result["startPrint"].append(ms_since(t0))
            result["pids"].append(km.provisioner.process.pid)
        kc = started[0][1]
        for _ in range(warmup):
            print1(kc)
        for _ in range(prints):
            t0 = time.perf_counter()
            print1(kc)
            result["print"].append(ms_since(t0))
        import ipykernel
        import jupyter_client
        result["argv"] = started[0][0].kernel_spec.argv
        result["versions"] = {"ipykernel": ipykernel.__version__, "jupyter_client": jupyter_client.__version__}
        print(json.dumps(result), flush=True)
        sys.stdin.read()
    finally:
        for km, kc in started:
            try:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
            except Exception as e:  # keep shutting the others down
                print("jupyter_baseline: shutdown failed: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    main()
