"""An agent for the event benchmarks (copied into their repository, run by the `command` agent):
print N lines at RATE lines/s, flushing each.  With --stamp each line is "T <wall ns> <i>" (the
time it was printed, for latency measurements), else "ev-<i>".  --delay S waits first (for
subscribers to connect)."""
import argparse, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("n", type=int)
ap.add_argument("rate", type=int)
ap.add_argument("--stamp", action="store_true")
ap.add_argument("--delay", type=float, default=0)
a = ap.parse_args()
time.sleep(a.delay)
t0 = time.monotonic()
for i in range(a.n):
    sys.stdout.write(f"T {time.time_ns()} {i}\n" if a.stamp else f"ev-{i}\n")
    sys.stdout.flush()
    d = t0 + (i + 1) / a.rate - time.monotonic()
    if d > 0:
        time.sleep(d)
