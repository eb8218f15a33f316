"""Helpers shared by the bench drivers (scripts/bench_*.py). Standard library only.

Reads a process's CPU time and memory from /proc, finds free loopback ports,
and runs a command while measuring it.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    """User + system CPU seconds of a live process (not its children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_jiffies():
    """Whole-machine CPU time from /proc/stat: (busy, iowait, total) jiffies
    summed over all cores; busy is everything but idle and iowait."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle, iowait = v[3], v[4]
    total = sum(v[:8])
    return total - idle - iowait, iowait, total


def machine_use(before, after):
    """What the machine did between two machine_jiffies(): busy and iowait
    as a share of all cores' time (0..1)."""
    busy, wait, total = (a - b for a, b in zip(after, before))
    return busy / max(total, 1), wait / max(total, 1)


def status_kib(pid, key):
    """A KiB field of /proc/PID/status (VmRSS, VmHWM, ...); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux 4.0+), so the next read is the
    peak of what ran since; False where the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


GNU_TIME = "/usr/bin/time"


def run(argv, env=None, cwd=None, check=True):
    """Runs argv to its end: (wall s, user+sys CPU s of it and its children, peak RSS KiB).

    The peak RSS is that of the largest process of the tree. wait4's
    ru_maxrss of a child forked from Python starts at Python's own RSS (the
    kernel carries the pre-exec peak over), so it is taken from GNU time,
    which forks from a small process; None without /usr/bin/time."""
    timed = os.access(GNU_TIME, os.X_OK)
    rss_file = None
    if timed:
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file] + list(argv)
    t = time.time()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.time() - t
    if check and status != 0:
        sys.exit(f"{' '.join(map(str, argv))} failed: {err.decode()[-2000:]}")
    rss = None
    if rss_file:
        with open(rss_file) as f:
            lines = f.read().split()
        os.remove(rss_file)
        rss = int(lines[-1]) if lines and lines[-1].isdigit() else None
    return wall, ru.ru_utime + ru.ru_stime, rss


def sh(script, env=None):
    """`run` of a bash script with errexit and pipefail."""
    return run(["bash", "-c", "set -euo pipefail; " + script], env=env)


def load():
    """The 1-minute load average, for the figures' context."""
    return os.getloadavg()[0]
