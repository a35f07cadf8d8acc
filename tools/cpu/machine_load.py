"""What the rest of the machine is doing while a benchmark runs: on a shared machine another process's busy core
takes a time slice from one of the benchmark's threads, and an engine whose threads meet at spinning barriers
(llama.cpp's ggml) then waits for the descheduled one at every operation, so such a run measures the neighbours,
not the engine. The CPU time of everything but our own children comes from /proc/stat's busy jiffies minus the
children's rusage."""
import os
import resource
import time

TICKS = os.sysconf("SC_CLK_TCK")


def _busy_seconds():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICKS  # user..steal; guest time is already inside user


def _children_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class OthersLoad:
    """Mean number of cores others kept busy between start() and stop()."""

    def start(self):
        self._busy, self._children, self._wall = _busy_seconds(), _children_seconds(), time.monotonic()

    def stop(self):
        wall = time.monotonic() - self._wall
        others = (_busy_seconds() - self._busy) - (_children_seconds() - self._children)
        return max(0.0, others / wall) if wall > 0 else 0.0


def wait_until_quiet(max_busy_cores, timeout_s, window_s=2.0):
    """Waits until others keep at most max_busy_cores busy over a window; returns (seconds waited, last load)."""
    started = time.monotonic()
    while True:
        load = OthersLoad()
        load.start()
        time.sleep(window_s)
        busy = load.stop()
        waited = time.monotonic() - started
        if busy <= max_busy_cores or waited >= timeout_s:
            return round(waited, 1), round(busy, 2)
