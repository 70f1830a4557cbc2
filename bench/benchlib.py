"""Shared helpers for the bench scripts: temp dirs, free ports, child processes that are always reaped,
an nginx origin with a generated config, /proc readings. Standard library only."""

import atexit
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)

_children = []


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def default_zhttpd():
    return os.environ.get("ZHTTPD", "./build/zhttpd")


def build_tools():
    """Build bench/zhttp_load and bench/handler with bench/Makefile (quietly)."""
    subprocess.run(["make", "-s", "-C", BENCH_DIR], check=True)


def make_tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)  # nginx workers may run as another user
    keep = os.environ.get("BENCH_KEEP_TMP")
    if not keep:
        atexit.register(shutil.rmtree, d, True)
    else:
        atexit.register(log, "kept temp dir " + d)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_block(n):
    """A port P with P..P+n-1 all free right now (for tcp spec bases)."""
    for _ in range(200):
        p = free_port()
        ok = True
        for i in range(1, n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p + i))
            except OSError:
                ok = False
            s.close()
        if ok:
            return p
    raise RuntimeError("no free port block")


class Child:
    """A child process with its output in a log file; stopped (by pid) at exit at the latest."""

    def __init__(self, name, argv, logpath, env=None):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.logf = open(logpath, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        self.pid = self.proc.pid
        _children.append(self)

    def alive(self):
        return self.proc.poll() is None

    def returncode(self):
        return self.proc.poll()

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        if not self.logf.closed:
            self.logf.close()
        if self in _children:
            _children.remove(self)

    def log_tail(self, n=15):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


def _stop_all():
    for c in list(_children):
        try:
            c.stop(2.0)
        except Exception:
            pass


atexit.register(_stop_all)


def _on_signal(sig, frame):
    _stop_all()
    sys.exit(128 + sig)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def wait_port(port, timeout=10.0, child=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child is not None and not child.alive():
            raise RuntimeError("%s exited (rc=%s):\n%s" % (child.name, child.returncode(), child.log_tail()))
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not listening after %.0fs" % (port, timeout))


def wait_path(path, timeout=10.0, child=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if child is not None and not child.alive():
            raise RuntimeError("%s exited (rc=%s):\n%s" % (child.name, child.returncode(), child.log_tail()))
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise RuntimeError("%s not created after %.0fs" % (path, timeout))


def start_nginx(tmp, files, workers=1):
    """Start nginx serving files {name: bytes} on a free loopback port. Return (child, port)."""
    root = os.path.join(tmp, "www")
    os.makedirs(root, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    port = free_port()
    ng = os.path.join(tmp, "nginx")
    os.makedirs(ng, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = """daemon off;
master_process on;
worker_processes %d;
%spid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %s/cbt;
    proxy_temp_path %s/pt;
    fastcgi_temp_path %s/ft;
    uwsgi_temp_path %s/ut;
    scgi_temp_path %s/st;
    default_type text/plain;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {
        listen 127.0.0.1:%d;
        root %s;
    }
}
""" % (workers, user, ng, ng, ng, ng, ng, ng, ng, port, root)
    path = os.path.join(ng, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    child = Child("nginx", ["nginx", "-e", os.path.join(ng, "error.log"), "-p", ng, "-c", path],
                  os.path.join(ng, "stdout.log"))
    wait_port(port, child=child)
    for name, data in files.items():
        got = urllib.request.urlopen("http://127.0.0.1:%d/%s" % (port, name), timeout=5).read()
        if got != data:
            raise RuntimeError("nginx origin serves the wrong body for " + name)
    return child, port


def median(xs):
    return statistics.median(xs) if xs else 0.0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """User + system CPU seconds of the process (all its threads) so far."""
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def ss_count(args):
    out = subprocess.run(["ss", "-Htn"] + args, capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])


def listen_backlog(port):
    """Recv-Q of the listening socket on port = connections completed by the kernel, not yet accepted."""
    out = subprocess.run(["ss", "-Hltn", "( sport = :%d )" % port], capture_output=True, text=True).stdout
    for l in out.splitlines():
        parts = l.split()
        if len(parts) >= 3:
            return int(parts[1])
    return -1


def machine_line():
    try:
        model = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
    except (OSError, IndexError):
        model = "?"
    return "%s, %d cores, load avg %s" % (model, os.cpu_count() or 0, " ".join(open("/proc/loadavg").read().split()[:3]))


def fmt_table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    out = [" | ".join(str(h).ljust(w) for h, w in zip(header, widths))]
    out.append("-+-".join("-" * w for w in widths))
    for r in rows:
        out.append(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)
