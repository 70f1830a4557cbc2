"""An HTTPS origin on 127.0.0.1 with a throw-away CA made with the openssl CLI.

    pki = make_pki(dirpath)     ca.crt, a server cert signed by it for IP:127.0.0.1 and
                                DNS:origin.test, and a self-signed cert for the same names
    TlsOrigin(cert, key)        threaded HTTPS origin: GET /hello -> 200 "hello over tls\\n";
                                .url(path), .port, .requests, .handshakes (completed)
    pki fixture                 one PKI per test session (EC keys: fast)
"""
import http.server
import pathlib
import ssl
import subprocess
import threading

import pytest

TLS_HELLO = b"hello over tls\n"


def _openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0, f"openssl {' '.join(args)} failed:\n{p.stdout.decode()}"


class Pki:
    def __init__(self, d: pathlib.Path):
        self.dir = d
        self.ca = d / "ca.crt"
        self.cert = d / "server.crt"          # signed by ca.crt
        self.key = d / "server.key"
        self.self_cert = d / "self.crt"       # self-signed, same names
        self.self_key = d / "self.key"


def make_pki(d) -> Pki:
    d = pathlib.Path(d)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    san = "subjectAltName=IP:127.0.0.1,DNS:origin.test"
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=zhttpd test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    _openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=origin.test", cwd=d)
    (d / "server.ext").write_text(f"{san}\nbasicConstraints=CA:FALSE\n"
                                  "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
             cwd=d)
    _openssl("req", "-x509", *ec, "-keyout", "self.key", "-out", "self.crt", "-days", "2",
             "-subj", "/CN=origin.test", "-addext", san, cwd=d)
    return Pki(d)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.server.peer_certs.append(peer)
        body = TLS_HELLO
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr, handler, ctx):
        self.ctx = ctx
        self.requests = []
        self.peer_certs = []
        self.handshakes = 0
        self.handshake_errors = []
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return sock, addr

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the per-connection thread, so a client that fails it never
        # blocks the accept loop.
        try:
            request.settimeout(10)
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.handshake_errors.append(repr(e))
            return
        self.handshakes += 1
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


def make_client_cert(pki: Pki, name="requester") -> tuple:
    """A client certificate (clientAuth) for CN=name signed by the PKI's CA: (cert, key) paths."""
    d = pki.dir
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)
    return d / f"{name}.crt", d / f"{name}.key"


class TlsOrigin:
    def __init__(self, cert, key, host="127.0.0.1", client_ca=None):
        """client_ca: require a client certificate signed by this CA (TLS client auth)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(client_ca))
        self.httpd = _Server((host, 0), _Handler, ctx)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self):
        return self.httpd.requests

    @property
    def handshakes(self):
        return self.httpd.handshakes

    def url(self, path="/", host=None):
        return f"https://{host or self.host}:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
