"""Driver of scripts/bench-backup.sh; see there. Standard library only.

Paths, each timed from start to finish, medians of --runs:
  C        etcd's snapshot stream read and thrown away (examples/snapshot_null)
  A        etcdctl snapshot save to a file
  B        etcdctl snapshot save + zstd -T0 + aws s3 cp (the script users write)
  ours     a manual backup into S3 (zstd + age) through the API: request to status ok
  R-users  aws s3 cp + zstd -d + etcdutl snapshot restore
  R-ours   omnictl etcd-backup restore
  D-ours   omnictl etcd-backup download (no etcdutl), for omnictl's own peak RSS
CPU seconds per GB of snapshot are read from /proc/PID/stat of each process.
"""

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchlib import cpu_seconds, free_port, load, reset_hwm, run, sh, status_kib

VALUE = 512 * 1024
CLUSTER = "bench"
BUCKET = "bench"


def http_json(port, method, path, body=None, headers=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


class Etcd:
    def __init__(self, a, work):
        self.a = a
        names = ["m0", "m1", "m2"]
        self.client = {n: free_port() for n in names}
        peer = {n: free_port() for n in names}
        initial = ",".join(f"{n}=http://127.0.0.1:{peer[n]}" for n in names)
        self.procs = {}
        for n in names:
            url = f"http://127.0.0.1:{self.client[n]}"
            self.procs[n] = subprocess.Popen(
                [a.etcd, "--name", n, "--data-dir", f"{work}/etcd-{n}",
                 "--listen-client-urls", url, "--advertise-client-urls", url,
                 "--listen-peer-urls", f"http://127.0.0.1:{peer[n]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[n]}",
                 "--initial-cluster", initial, "--quota-backend-bytes", str(16 << 30),
                 "--max-request-bytes", str(2 << 20), "--snapshot-count", "2000"],
                stdout=open(f"{work}/etcd-{n}.log", "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            if all(subprocess.run([a.etcdctl, "--endpoints", self.url(n), "endpoint", "health"],
                                  capture_output=True).returncode == 0 for n in names):
                return
            time.sleep(0.1)
        sys.exit("etcd did not start; see " + work)

    def url(self, n="m0"):
        return f"http://127.0.0.1:{self.client[n]}"

    def db_size(self):
        return int(http_json(self.client["m0"], "POST", "/v3/maintenance/status", {})["dbSize"])

    def fill(self, mib):
        """Values of VALUE bytes, a third random and two thirds repetitive text (~3:1 under zstd)."""
        target = mib << 20
        counter = [0]
        lock = threading.Lock()

        def worker():
            c = http.client.HTTPConnection("127.0.0.1", self.client["m0"], timeout=120)
            while True:
                with lock:
                    i = counter[0]
                    counter[0] += 1
                if i * VALUE >= target:
                    return
                text = (f'{{"kind":"ConfigMap","name":"object-{i}","data":"'.encode() * (VALUE // 40 + 1))
                v = os.urandom(VALUE // 3) + text[: VALUE - VALUE // 3]
                body = json.dumps({"key": base64.b64encode(f"/bench/{i:08}".encode()).decode(),
                                   "value": base64.b64encode(v).decode()})
                c.request("POST", "/v3/kv/put", body=body)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    raise RuntimeError(f"put: {r.status}")

        t = time.time()
        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(worker) for _ in range(4)]:
                f.result()
        print(f"filled etcd: {mib} MiB of values in {time.time() - t:.0f} s, db {self.db_size() / 2**20:.0f} MiB",
              flush=True)

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            p.wait()


class Omni:
    def __init__(self, a, work, s3_port, keys, etcd):
        self.port = free_port()
        self.work = work
        flags = [a.omni, "--data-dir", f"{work}/omni", "--bind", f"127.0.0.1:{self.port}",
                 "--etcd-backup-s3", "--etcd-backup-jitter", "0s",
                 "--api-rate-limit", "1000000", "--api-rate-burst", "1000000"] + a.extra
        self.proc = subprocess.Popen(flags, stdout=open(f"{work}/omni.log", "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("omni did not become ready; see " + work)
        self.token = open(f"{work}/omni/admin-token").read().strip()
        self.apply({"metadata": {"type": "EtcdBackupS3Configs.omni.sidero.dev", "namespace": "default",
                                 "id": "etcd-backup-s3-conf"},
                    "spec": {"bucket": BUCKET, "region": "us-east-1",
                             "endpoint": f"http://127.0.0.1:{s3_port}",
                             "accesskeyid": keys[0], "secretaccesskey": keys[1]}})
        for n in ("m0", "m1", "m2"):
            self.apply({"metadata": {"type": "Machines.omni.sidero.dev", "namespace": "default", "id": n},
                        "spec": {"etcdendpoints": [etcd.url(n)]}})
            self.apply({"metadata": {"type": "MachineSetNodes.omni.sidero.dev", "namespace": "default",
                                     "id": n,
                                     "labels": {"omni.sidero.dev/cluster": CLUSTER,
                                                "omni.sidero.dev/machine-set": f"{CLUSTER}-control-planes",
                                                "omni.sidero.dev/role-controlplane": ""}},
                        "spec": {}})
        self.apply({"metadata": {"type": "Clusters.omni.sidero.dev", "namespace": "default", "id": CLUSTER},
                    "spec": {}})

    def call(self, method, path, body=None):
        return http_json(self.port, method, path, body,
                         {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})

    def apply(self, res):
        self.call("POST", "/api/v1/apply", res)

    def status(self):
        try:
            return self.call("GET", f"/api/v1/resources/EtcdBackupStatuses.omni.sidero.dev/ephemeral/{CLUSTER}")
        except RuntimeError:
            return None

    def backup(self):
        """A manual backup: request to status ok. Returns wall seconds."""
        # Backup ids are per second: never two in one second.
        last = getattr(self, "last_at", 0)
        while int(time.time()) <= last:
            time.sleep(0.05)
        t = time.time()
        at = int(t)
        self.last_at = at
        self.apply({"metadata": {"type": "EtcdManualBackups.omni.sidero.dev", "namespace": "ephemeral",
                                 "id": CLUSTER},
                    "spec": {"backupat": {"seconds": at, "nanos": 0}}})
        deadline = t + 1800
        while time.time() < deadline:
            st = self.status()
            spec = (st or {}).get("spec", {})
            if spec.get("status") == 1 and (spec.get("lastbackuptime") or {}).get("seconds") == at:
                return time.time() - t
            if spec.get("status") == 2 and (spec.get("lastbackupattempt") or {}).get("seconds") == at:
                sys.exit(f"backup failed: {spec.get('error')}")
            time.sleep(0.01)
        sys.exit("backup did not finish")


# Stages of omni's pipelines, by the symbols perf attributes samples to. In a
# backup the snapshot is read from etcd over gRPC and uploaded to S3; in a
# restore it is read from S3 and sent to omnictl over HTTP (hyper both ways).
STAGES = [
    ("zstd", ("ZSTD_", "HUF_", "FSE_", "zstd")),
    ("age (chacha20poly1305)", ("chacha", "poly1305", "Poly1305", "ChaCha", "age::")),
    ("hash (sha256)", ("sha2::", "sha256", "Sha256")),
    ("memcpy/memmove", ("memcpy", "memmove", "__memcpy", "__memmove")),
    ("snapshot read (etcd gRPC: tonic/h2/prost)", ("tonic::", "h2::", "prost::", "etcd_client")),
    ("S3/HTTP (object_store/reqwest/hyper/axum)", ("object_store", "reqwest", "hyper", "http_body",
                                                   "axum")),
    ("tokio/alloc", ("tokio::", "malloc", "free", "_int_", "mi_", "je_", "cfree")),
]


def perf_report(path, sort):
    """(percent, key) rows of `perf report --sort SORT`, self time."""
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", sort,
                          "--stdio", "-g", "none", "--percent-limit", "0.05"],
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line:
            continue
        pct, rest = line.split("%", 1)
        try:
            rows.append((float(pct), rest.strip()))
        except ValueError:
            continue
    return rows


def perf_stages(path, what, cpu_per_gb):
    """CPU s/GB per stage of omni, from a perf recording of `what`."""
    shares, kernel = {}, 0.0
    for pct, sym in perf_report(path, "sym"):
        if sym.startswith("[k]"):
            kernel += pct
            continue
        for name, needles in STAGES:
            if any(n in sym for n in needles):
                shares[name] = shares.get(name, 0.0) + pct
                break
        else:
            shares["other"] = shares.get("other", 0.0) + pct
    shares["kernel (syscalls, TCP, page cache)"] = kernel
    print(f"omni CPU by stage (perf, {what}; omni total {cpu_per_gb:.2f} s/GB):")
    for name, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<42} {pct:5.1f} %  {cpu_per_gb * pct / 100:.2f} s/GB")


def perf_top(path, what, sort, n=12):
    print(f"{what} (perf, by {sort}, self time):")
    for pct, key in perf_report(path, sort)[:n]:
        print(f"  {pct:5.1f} %  {key[:110]}")


def perf_attach(pid, path):
    p = subprocess.Popen(["perf", "record", "-g", "-F", "499", "-o", path, "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


def perf_detach(p):
    p.send_signal(2)
    p.wait()


def fmt_ratio(x, base):
    return f"{x / base:.2f}x" if base else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--omni", required=True)
    ap.add_argument("--omnictl", required=True)
    ap.add_argument("--snapshot-null", required=True)
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--etcdctl", required=True)
    ap.add_argument("--etcdutl", required=True)
    ap.add_argument("--s3s", required=True)
    ap.add_argument("--aws", required=True)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--perf", default=None,
                    help="where to keep the `perf record -g` of omni in one extra, untimed backup "
                         "(recorded whenever perf is installed)")
    ap.add_argument("--perf-restore", default=None,
                    help="after the timed restores, one more restore under perf: "
                         "omni into PREFIX.omni, omnictl and etcdutl into PREFIX.omnictl")
    ap.add_argument("--restore-only", action="store_true",
                    help="each backup path once (untimed figures), then --runs restores")
    ap.add_argument("extra", nargs="*", help="extra omni flags")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-backup-", dir=a.workdir)
    if shutil.which("perf"):
        # CPU s/GB by stage is part of every report, not an option.
        a.perf = a.perf or f"{work}/perf-backup.data"
    else:
        print("bench: perf not found; no CPU by stage (apt-get install linux-perf)", flush=True)
    procs = []
    etcd = None
    try:
        # S3
        s3_port = free_port()
        keys = ("BENCHKEY", "bench-secret-" + os.urandom(6).hex())
        os.makedirs(f"{work}/s3/{BUCKET}")
        s3 = subprocess.Popen([a.s3s, "--host", "127.0.0.1", "--port", str(s3_port),
                               "--access-key", keys[0], "--secret-key", keys[1], f"{work}/s3"],
                              stdout=open(f"{work}/s3.log", "w"), stderr=subprocess.STDOUT)
        procs.append(s3)
        with open(f"{work}/aws.cfg", "w") as f:
            f.write("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1],
                   AWS_CONFIG_FILE=f"{work}/aws.cfg", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                   AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
                   AWS_RESPONSE_CHECKSUM_VALIDATION="when_required")
        aws = f"{a.aws} --endpoint-url http://127.0.0.1:{s3_port} --only-show-errors"

        etcd = Etcd(a, work)
        etcd.fill(a.mib)
        omni = Omni(a, work, s3_port, keys, etcd)
        procs.append(omni.proc)
        env_ctl = dict(env, OMNICTL_ENDPOINT=f"http://127.0.0.1:{omni.port}", OMNICTL_TOKEN=omni.token)
        m0 = etcd.procs["m0"].pid

        def etcd_cpu():
            # omni picks its member itself: count all three.
            return sum(cpu_seconds(p.pid) for p in etcd.procs.values())

        omni_rss_idle = status_kib(omni.proc.pid, "VmRSS")
        res = {k: [] for k in ("C", "A", "B", "ours", "R-users", "R-ours", "D-ours")}
        cpu = {k: [] for k in res}
        # The users' restore, step by step: which one the time goes to.
        steps = {k: [] for k in ("aws s3 cp", "zstd -d", "etcdutl")}
        rss = {"omnictl restore": 0, "omnictl download": 0}
        loads = []
        backup_hwm = []
        snap_bytes = 0
        backup_runs = 1 if a.restore_only else a.runs
        for i in range(backup_runs):
            loads.append(load())
            # C
            e0 = cpu_seconds(m0)
            p = subprocess.run([a.snapshot_null, etcd.url()], capture_output=True, check=True)
            nbytes, secs = p.stdout.split()
            snap_bytes = int(nbytes)
            res["C"].append(float(secs))
            cpu["C"].append({"etcd": cpu_seconds(m0) - e0})
            # A
            e0 = cpu_seconds(m0)
            wall, c, _ = run([a.etcdctl, "--endpoints", etcd.url(), "snapshot", "save", f"{work}/a.db"])
            res["A"].append(wall)
            cpu["A"].append({"etcd": cpu_seconds(m0) - e0, "etcdctl": c})
            os.remove(f"{work}/a.db")
            # B
            e0, s0 = cpu_seconds(m0), cpu_seconds(s3.pid)
            wall, c, _ = sh(f"{a.etcdctl} --endpoints {etcd.url()} snapshot save {work}/b.db >/dev/null; "
                            f"zstd -q -T0 --rm {work}/b.db -o {work}/b.db.zst; "
                            f"{aws} s3 cp {work}/b.db.zst s3://{BUCKET}/users/b.db.zst; rm {work}/b.db.zst",
                            env=env)
            res["B"].append(wall)
            cpu["B"].append({"etcd": cpu_seconds(m0) - e0, "etcdctl+zstd+aws": c,
                             "s3s-fs": cpu_seconds(s3.pid) - s0})
            # ours
            reset_hwm(omni.proc.pid)
            e0, s0, o0 = etcd_cpu(), cpu_seconds(s3.pid), cpu_seconds(omni.proc.pid)
            res["ours"].append(omni.backup())
            cpu["ours"].append({"etcd (3 members)": etcd_cpu() - e0, "omni": cpu_seconds(omni.proc.pid) - o0,
                                "s3s-fs": cpu_seconds(s3.pid) - s0})
            backup_hwm.append(status_kib(omni.proc.pid, "VmHWM"))
        omni_hwm_backup = max(backup_hwm)
        if a.perf:
            # One more backup, untimed: perf itself slows what it records.
            perf = perf_attach(omni.proc.pid, a.perf)
            o0 = cpu_seconds(omni.proc.pid)
            omni.backup()
            perf_detach(perf)
            backup_omni_cpu = cpu_seconds(omni.proc.pid) - o0
        # The restores' own peak, apart from the backups'.
        hwm_reset = reset_hwm(omni.proc.pid)
        restore_flags = ["--name", "r0", "--initial-cluster", "r0=http://127.0.0.1:2380",
                         "--initial-advertise-peer-urls", "http://127.0.0.1:2380"]
        restore_ours = [a.omnictl, "etcd-backup", "restore", "--cluster", CLUSTER, "--latest",
                        "--data-dir", f"{work}/r-ours", "--etcdutl", a.etcdutl] + restore_flags
        for i in range(a.runs):
            loads.append(load())
            # restore, the users' way, one step at a time
            s0 = cpu_seconds(s3.pid)
            took = {}
            took["aws s3 cp"] = sh(f"{aws} s3 cp s3://{BUCKET}/users/b.db.zst {work}/r.db.zst", env=env)
            took["zstd -d"] = sh(f"zstd -q -d --rm {work}/r.db.zst -o {work}/r.db")
            took["etcdutl"] = sh(f"{a.etcdutl} snapshot restore {work}/r.db --data-dir {work}/r-users "
                                 + " ".join(restore_flags) + " >/dev/null 2>&1")
            os.remove(f"{work}/r.db")
            for k, (wall, _, _) in took.items():
                steps[k].append(wall)
            res["R-users"].append(sum(t[0] for t in took.values()))
            cpu["R-users"].append({"aws+zstd+etcdutl": sum(t[1] for t in took.values()),
                                   "s3s-fs": cpu_seconds(s3.pid) - s0})
            shutil.rmtree(f"{work}/r-users")
            # ours
            s0, o0 = cpu_seconds(s3.pid), cpu_seconds(omni.proc.pid)
            wall, c, hwm = run(restore_ours, env=env_ctl)
            res["R-ours"].append(wall)
            cpu["R-ours"].append({"omnictl+etcdutl": c, "omni": cpu_seconds(omni.proc.pid) - o0,
                                  "s3s-fs": cpu_seconds(s3.pid) - s0})
            rss["omnictl restore"] = max(rss["omnictl restore"], hwm or 0)
            shutil.rmtree(f"{work}/r-ours")
            # download only: omnictl's own peak
            o0 = cpu_seconds(omni.proc.pid)
            wall, c, hwm = run([a.omnictl, "etcd-backup", "download", "--cluster", CLUSTER, "--latest",
                                "-o", f"{work}/d.db"], env=env_ctl)
            res["D-ours"].append(wall)
            cpu["D-ours"].append({"omnictl": c, "omni": cpu_seconds(omni.proc.pid) - o0})
            rss["omnictl download"] = max(rss["omnictl download"], hwm or 0)
            os.remove(f"{work}/d.db")
        omni_hwm = status_kib(omni.proc.pid, "VmHWM")
        if a.perf_restore:
            # Untimed: perf itself slows what it records.
            o0 = cpu_seconds(omni.proc.pid)
            perf = perf_attach(omni.proc.pid, a.perf_restore + ".omni")
            run(["perf", "record", "-g", "-F", "499", "-o", a.perf_restore + ".omnictl", "--"]
                + restore_ours, env=env_ctl)
            perf_detach(perf)
            restore_omni_cpu = cpu_seconds(omni.proc.pid) - o0
            shutil.rmtree(f"{work}/r-ours")

        gb = snap_bytes / 1e9
        med = {k: statistics.median(v) for k, v in res.items()}
        print(f"\nsnapshot {snap_bytes / 2**20:.0f} MiB; 3-member etcd; s3s-fs; medians of {a.runs}; "
              f"load average at each run's start {' '.join(f'{x:.2f}' for x in loads)}; "
              f"now {load():.2f}")
        print(f"{'path':<9} {'median s':>9} {'runs':>24} {'vs C':>6} {'vs A':>6} {'vs B':>6}  CPU s/GB")
        for k, v in res.items():
            cpus = {}
            for d in cpu[k]:
                for name, s in d.items():
                    cpus.setdefault(name, []).append(s)
            cpu_txt = ", ".join(f"{n} {statistics.median(s) / gb:.2f}" for n, s in cpus.items())
            runs = " ".join(f"{x:.2f}" for x in v)
            if k.startswith("R-") or k.startswith("D-"):
                ratio = f"{'':>6} {'':>6} {fmt_ratio(med[k], med['R-users']):>6}" if k != "R-users" else ""
            else:
                ratio = f"{fmt_ratio(med[k], med['C']):>6} {fmt_ratio(med[k], med['A']):>6} {fmt_ratio(med[k], med['B']):>6}"
            print(f"{k:<9} {med[k]:>9.2f} {runs:>24} {ratio:<20}  {cpu_txt}")
        print("(R-ours/D-ours 'vs B' column: vs R-users)")
        print("R-users by step, median s: "
              + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in steps.items()))
        if a.perf:
            perf_stages(a.perf, "one backup", backup_omni_cpu / gb)
        if a.perf_restore:
            perf_stages(a.perf_restore + ".omni", "one restore", restore_omni_cpu / gb)
            perf_top(a.perf_restore + ".omnictl", "omnictl restore with etcdutl", "comm,dso")
            perf_top(a.perf_restore + ".omnictl", "omnictl restore with etcdutl", "comm,sym", 25)
        print(f"omni VmRSS before the first backup: {omni_rss_idle / 1024:.0f} MiB; "
              f"VmHWM: {omni_hwm_backup / 1024:.0f} MiB in the backups "
              f"({' '.join(f'{x / 1024:.0f}' for x in backup_hwm)}), "
              f"{omni_hwm / 1024:.0f} MiB {'in' if hwm_reset else 'after'} the restores; "
              f"omnictl peak RSS: restore (with etcdutl) {rss['omnictl restore'] / 1024:.0f} MiB, "
              f"download {rss['omnictl download'] / 1024:.0f} MiB")
    finally:
        for p in procs:
            p.terminate()
        if etcd:
            etcd.stop()
        for p in procs:
            p.wait()
        if a.keep:
            print("work dir kept:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
