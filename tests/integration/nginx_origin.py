"""nginx as an origin: its own config, prefix and logs in a run directory, one process, a free
loopback port. Serves files written into .root.

    with NginxOrigin(rundir, {"big.bin": data}) as ng:
        ng.url("/big.bin")
"""
import pathlib
import shutil
import socket
import subprocess
import time

from conftest import free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_timeout 30;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location = /teapot {{ return 418 "short and stout\\n"; }}
    }}
}}
"""


class NginxOrigin:
    def __init__(self, rundir, files):
        self.dir = pathlib.Path(rundir) / "nginx"
        (self.dir / "www").mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (self.dir / "www" / name).write_bytes(data)
        self.port = free_port()
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(CONF.format(d=self.dir, port=self.port))
        self.proc = None

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def access_log(self):
        try:
            return (self.dir / "access.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self):
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(self.conf),
                                      "-e", str(self.dir / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = (self.dir / "error.log").read_text(errors="replace") \
                        if (self.dir / "error.log").exists() else ""
                    self.__exit__()
                    raise AssertionError(f"nginx did not start:\n{err}")
                time.sleep(0.05)

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
