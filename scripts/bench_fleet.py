"""Driver of scripts/bench-fleet.sh; see there. Standard library only."""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchlib import cpu_seconds, free_port, machine_jiffies, machine_use, status_kib


def start_etcd(etcd, etcdctl, work, name):
    c, p = free_port(), free_port()
    url = f"http://127.0.0.1:{c}"
    proc = subprocess.Popen(
        [etcd, "--name", name, "--data-dir", f"{work}/{name}",
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{p}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
         "--initial-cluster", f"{name}=http://127.0.0.1:{p}"],
        stdout=open(f"{work}/{name}.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(200):
        if subprocess.run([etcdctl, "--endpoints", url, "endpoint", "health"],
                          capture_output=True).returncode == 0:
            return proc, url
        time.sleep(0.1)
    sys.exit(f"{name} did not start")


class Client:
    def __init__(self, port, token):
        self.port, self.token = port, token
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        return c

    def call(self, method, path, body=None):
        for attempt in range(5):
            try:
                c = self.conn()
                c.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers={"Authorization": f"Bearer {self.token}",
                                   "Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                if r.status == 429:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
                return json.loads(data) if data else None
            except (ConnectionError, http.client.HTTPException):
                self.local.c = None
        raise RuntimeError(f"{method} {path}: gave up")

    def loop_counts(self):
        """Per controller: (reconciles, relists) from /metrics."""
        c = self.conn()
        c.request("GET", "/metrics", headers={"Authorization": f"Bearer {self.token}"})
        r = c.getresponse()
        text = r.read().decode()
        out = {}
        for line in text.splitlines():
            for family, slot in (("omni_controller_reconciles_total", 0),
                                 ("omni_controller_relists_total", 1),
                                 ("omni_state_reads_total", 0)):
                if line.startswith(family + "{"):
                    name = line.split('"')[1]
                    if family == "omni_state_reads_total":
                        name = f"(state reads from {name})"
                    out.setdefault(name, [0, 0])[slot] = int(float(line.rsplit(" ", 1)[1]))
        return out

    def statuses(self):
        out = self.call("GET", "/api/v1/resources/EtcdBackupStatuses.omni.sidero.dev/ephemeral")
        items = out.get("items", out) if isinstance(out, dict) else out
        return {r["metadata"]["id"]: r["spec"] for r in items}


class StatusWatch:
    """Every cluster's newest EtcdBackupStatuses spec, kept by one watch
    stream: polling a list of all statuses would cost omni ~0.3 s of CPU per
    call at 10,000 clusters, CPU taken from the backups being measured."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.specs, self.lock = {}, threading.Lock()
        # Every backup attempt seen per cluster: with jitter a round can
        # outlast the interval, so the newest status may already be the
        # cluster's next round.
        self.attempts = {}
        self.ready = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()
        if not self.ready.wait(120):
            sys.exit("the status watch did not bootstrap")

    def run(self):
        # A watcher that falls behind gets an error line and the stream
        # ends: watch again (the bootstrap lists the current items).
        while True:
            c = http.client.HTTPConnection("127.0.0.1", self.port)
            try:
                c.request("GET", "/api/v1/watch/EtcdBackupStatuses.omni.sidero.dev/ephemeral",
                          headers={"Authorization": f"Bearer {self.token}"})
            except OSError:
                return  # omni has stopped
            resp = c.getresponse()
            if resp.status != 200:
                sys.exit(f"watch: {resp.status} {resp.read()[:300]!r}")
            for line in resp:
                ev = json.loads(line)
                kind = ev.get("event")
                r = ev.get("resource") or {}
                meta = r.get("metadata", {})
                if kind == "bootstrapped":
                    self.ready.set()
                elif kind == "error":
                    print(f"status watch: {ev.get('message')}", file=sys.stderr)
                    break
                elif kind == "destroyed":
                    with self.lock:
                        self.specs.pop(meta.get("id"), None)
                elif meta.get("id"):
                    spec = r.get("spec", {})
                    with self.lock:
                        self.specs[meta["id"]] = spec
                        self.attempts.setdefault(meta["id"], set()).add(
                            ts(spec.get("lastbackupattempt")))
            c.close()

    def statuses(self):
        with self.lock:
            return dict(self.specs)

    def first_attempt_after(self, cluster, t):
        with self.lock:
            return min((a for a in self.attempts.get(cluster, ()) if a > t), default=None)


def ts(t):
    return (t or {}).get("seconds", 0) + (t or {}).get("nanos", 0) / 1e9


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def print_loops(cl, when):
    counts = cl.loop_counts()
    parts = [f"{name.removesuffix('Controller')} {r}/{l}" for name, (r, l) in sorted(counts.items())]
    print(f"reconciles/relists {when}: " + ", ".join(parts))


def perf_start(pid, name):
    """With PERF_DIR set, samples omni's stacks until perf_stop: a profile of
    each round, to tell what the second round spends that the first did not."""
    out = os.environ.get("PERF_DIR")
    if not out:
        return None
    graph = os.environ.get("PERF_CALLGRAPH", "fp")  # dwarf: stacks without frame pointers
    return subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", graph, "-p", str(pid),
                             "-o", os.path.join(out, f"{name}.data")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(p):
    if p is not None:
        p.send_signal(signal.SIGINT)
        p.wait()


def print_machine(what, m0, e0, etcd_pid, n):
    """The whole machine over a round: is it CPU-bound, waiting on the
    disk, and how much of it went to the members' etcd (the snapshots)."""
    busy, wait = machine_use(m0, machine_jiffies())
    cores = os.cpu_count() or 1
    etcd = cpu_seconds(etcd_pid) - e0
    print(f"  {what}, machine: {busy * 100:.0f} % of {cores} cores busy, iowait {wait * 100:.1f} %; "
          f"members' etcd {etcd * 1000 / n:.2f} ms CPU per cluster")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--omni", required=True)
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--etcdctl", required=True)
    ap.add_argument("--interval", type=int, default=120, help="automatic backup interval, s")
    ap.add_argument("--jitter", default="0s",
                    help="--etcd-backup-jitter (omni's default is 10m; 0s makes every cluster due at once)")
    ap.add_argument("--idle", type=int, default=20, help="idle CPU window, s")
    ap.add_argument("--idle-delay", type=int, default=0,
                    help="wait this long after the first round before measuring idle CPU, s "
                         "(lets the first probe of every machine finish)")
    ap.add_argument("--state-etcd", action="store_true")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-fleet-")
    procs = []
    try:
        members, ep = start_etcd(a.etcd, a.etcdctl, work, "members")
        procs.append(members)
        extra = list(a.extra)
        if a.state_etcd:
            st, st_url = start_etcd(a.etcd, a.etcdctl, work, "state")
            procs.append(st)
            extra = [x.replace("{state_etcd}", st_url) for x in extra]
        port = free_port()
        flags = [a.omni, "--data-dir", f"{work}/omni", "--bind", f"127.0.0.1:{port}",
                 "--etcd-backup-jitter", a.jitter,
                 "--etcd-backup-min-interval", f"{min(a.interval, 3600)}s",
                 "--api-rate-limit", "1000000", "--api-rate-burst", "1000000"] + extra
        omni = subprocess.Popen(flags, stdout=open(f"{work}/omni.log", "w"), stderr=subprocess.STDOUT)
        procs.append(omni)
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("omni did not become ready; see " + work)
        token = open(f"{work}/omni/admin-token").read().strip()
        cl = Client(port, token)
        print(f"omni: {' '.join(os.path.basename(f) if i == 0 else f for i, f in enumerate(flags))}")
        print(f"N = {a.n} clusters, interval {a.interval}s, jitter {a.jitter}, local store")

        def cluster(c, schedule):
            spec = {"backupconfiguration": {"interval": {"seconds": a.interval, "nanos": 0}}} if schedule else {}
            cl.call("POST", "/api/v1/apply", {
                "metadata": {"type": "Clusters.omni.sidero.dev", "namespace": "default", "id": c},
                "spec": spec})

        def apply(i):
            m = f"m-{i:05d}"
            c = f"c-{i:05d}"
            cl.call("POST", "/api/v1/apply", {
                "metadata": {"type": "Machines.omni.sidero.dev", "namespace": "default", "id": m},
                "spec": {"etcdendpoints": [ep]}})
            cl.call("POST", "/api/v1/apply", {
                "metadata": {"type": "MachineSetNodes.omni.sidero.dev", "namespace": "default", "id": m,
                             "labels": {"omni.sidero.dev/cluster": c,
                                        "omni.sidero.dev/machine-set": f"{c}-control-planes",
                                        "omni.sidero.dev/role-controlplane": ""}},
                "spec": {}})
            cluster(c, False)

        # Phase 1: the fleet without schedules, so that no backup runs while
        # it is applied and the CPU measured is the cost of the writes and
        # the reconciles they cause, comparable across N.
        time.sleep(2)
        cpu0, t0 = cpu_seconds(omni.pid), time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(apply, range(a.n)))
        t1, cpu1 = time.time(), cpu_seconds(omni.pid)
        print(f"apply {3 * a.n} resources: {t1 - t0:.1f} s wall, {cpu1 - cpu0:.1f} s omni CPU, "
              f"{(cpu1 - cpu0) * 1000 / (3 * a.n):.2f} ms CPU per resource")
        print_loops(cl, "after the apply")
        # Let the first probes of the new machines finish before phase 2.
        time.sleep(5)

        # Phase 2: every cluster gets its interval; all come due at once.
        cpu0, t0 = cpu_seconds(omni.pid), time.time()
        m0, e0 = machine_jiffies(), cpu_seconds(members.pid)
        perf = perf_start(omni.pid, "round1")
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: cluster(f"c-{i:05d}", True), range(a.n)))

        watch = StatusWatch(port, token)
        poll = 1.0

        # First round: every cluster backed up once (due at once).
        deadline = time.time() + max(600, a.n * 0.5)
        while True:
            st = watch.statuses()
            ok = [s for s in st.values() if s.get("status") == 1]
            if len(ok) >= a.n:
                break
            if time.time() > deadline:
                sys.exit(f"first round incomplete: {len(ok)}/{a.n}; see {work}")
            time.sleep(poll)
        first = {c: ts(s["lastbackuptime"]) for c, s in st.items()}
        t2, cpu2 = time.time(), cpu_seconds(omni.pid)
        perf_stop(perf)
        print(f"first round: all {a.n} backed up {t2 - t0:.1f} s after their schedules were applied; "
              f"{cpu2 - cpu0:.1f} s omni CPU, {(cpu2 - cpu0) * 1000 / a.n:.2f} ms per cluster "
              f"(one update and one backup)")
        print_machine("first round", m0, e0, members.pid, a.n)
        print_loops(cl, "after the first round")

        # Idle: between the rounds, nothing due.
        # Due times as the server announced them (nextbackuptime), which
        # include each cluster's jitter.
        due, give_up = {}, time.time() + 120
        while len(due) < a.n and time.time() < give_up:
            due = {c: ts(s.get("nextbackuptime")) for c, s in watch.statuses().items()
                   if ts(s.get("nextbackuptime")) > first.get(c, 0)}
            if len(due) < a.n:
                time.sleep(poll)
        if len(due) < a.n:
            sys.exit(f"only {len(due)}/{a.n} statuses announce their next backup; see {work}")
        quiet_end = min(due.values()) - 2
        start = time.time() + 2
        start += a.idle_delay
        if quiet_end - start >= 5:
            time.sleep(2 + a.idle_delay)
            window = min(a.idle, quiet_end - time.time())
            c0, w0 = cpu_seconds(omni.pid), time.time()
            time.sleep(window)
            c1, w1 = cpu_seconds(omni.pid), time.time()
            print(f"idle CPU: {(c1 - c0) * 100 / (w1 - w0):.2f} % of a core over {w1 - w0:.0f} s")
        else:
            print("idle CPU: no quiet window before the second round (raise --interval)")

        # Second round: skew = actual start minus due.
        time.sleep(max(0.0, quiet_end - time.time()))
        loops2 = cl.loop_counts()
        c2, w2 = cpu_seconds(omni.pid), time.time()
        m0, e0 = machine_jiffies(), cpu_seconds(members.pid)
        perf = perf_start(omni.pid, "round2")
        deadline = max(due.values()) + max(600, a.n * 0.5)
        while True:
            st = watch.statuses()
            done = {c: s for c, s in st.items()
                    if s.get("status") == 1 and ts(s["lastbackuptime"]) > first.get(c, 0)}
            if len(done) >= a.n:
                break
            if time.time() > deadline:
                sys.exit(f"second round incomplete: {len(done)}/{a.n}; see {work}")
            time.sleep(poll)
        c3, w3 = cpu_seconds(omni.pid), time.time()
        perf_stop(perf)
        print(f"second round: due over {max(due.values()) - min(due.values()):.1f} s, all done "
              f"{w3 - w2 - 2:.1f} s after the first was due; "
              f"{(c3 - c2) * 1000 / a.n:.2f} ms omni CPU per cluster")
        print_machine("second round", m0, e0, members.pid, a.n)
        loops3 = cl.loop_counts()
        per = {k.removesuffix("Controller"): (r - loops2.get(k, [0, 0])[0]) / a.n
               for k, (r, _) in loops3.items() if not k.startswith("(")}
        print(f"second round: {sum(per.values()):.1f} reconciles per cluster ("
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items()) if v >= 0.05) + ")")
        started = {c: watch.first_attempt_after(c, first[c]) for c in done}
        skew = [started[c] - due[c] for c in done]
        worst = sorted(done, key=lambda c: started[c] - due[c])[-3:]
        for c in worst:
            print(f"  latest: {c} due {due[c] - t0:.1f} s, started {started[c] - t0:.1f} s "
                  f"(after the schedules were applied)")
        print(f"skew of the second round: p50 {pct(skew, 50):.2f} s, p99 {pct(skew, 99):.2f} s, "
              f"max {max(skew):.2f} s")
        lat = []
        for _ in range(5):
            s0 = time.time()
            cl.statuses()
            lat.append(time.time() - s0)
        print_loops(cl, "after two rounds")
        print(f"list all {a.n} statuses: median {statistics.median(lat) * 1000:.0f} ms")
        print(f"RSS: {status_kib(omni.pid, 'VmRSS') // 1024} MiB now, "
              f"peak {status_kib(omni.pid, 'VmHWM') // 1024} MiB")
        s0 = time.time()
        omni.send_signal(signal.SIGTERM)
        try:
            omni.wait(timeout=60)
            print(f"SIGTERM to exit: {time.time() - s0:.1f} s")
        except subprocess.TimeoutExpired:
            print("SIGTERM to exit: still running after 60 s")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.kill()
                p.wait()
        if not os.environ.get("KEEP_WORK"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    main()
