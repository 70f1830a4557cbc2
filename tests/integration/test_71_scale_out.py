"""Scale-out past one process (DESIGN.md, "Scaling past one machine"; docs/scaling.md): two zhttpd
instances with distinct ids, every ZeroMQ endpoint on tcp://127.0.0.1, and one handler pool connected
to both, exactly as the recipe says (handlers connect; zhttpd binds).

Each instance runs both roles:
    zhttpd --id zA --listen 127.0.0.1:H --zclient-stream tcp://127.0.0.1:P --zserver-stream tcp://127.0.0.1:Q
  server role: PUSH P (new requests), ROUTER P+1 (later packets), SUB P+2 (replies, prefix "zA ")
  client role: PULL Q (new requests), ROUTER Q+1 (later packets, identity zA), PUB Q+2 (replies)
The pool: one PULL/ROUTER/PUB handler connected to both P bases, one PUSH/ROUTER/SUB requester
connected to both Q bases. Checked: inbound requests on either instance are answered; client-role
sessions whose body continues through the ROUTER reach the instance that took them (the reply
names it in `from`); SIGKILL of one instance mid-run loses only its own sessions (the handler sees
them expire: no keep-alive within 5 intervals, --server-keepalive-ms 200) while the other
instance's sessions finish; the instance restarted with the same id and ports is used again by the
same pool sockets (nothing in the pool is restarted). The figures the test measures are printed on
one line (pytest -s) and quoted in docs/scaling.md.

The second test runs the recipe with Pushpin 1.36 as the pool: pushpin-proxy and pushpin-handler
connected to both instances through their condure_* spec lists."""
import http.client
import json
import os
import signal
import subprocess
import time

import pytest
import zmq

import tnetstring_py as tns
from conftest import build_dir, free_port
from origin import Origin
from srvkit import HttpConn, free_base_port, get
from streamorigin import AioOrigin
from test_70_pushpin import pushpin_ready, setup_origin
from zhttpd import SANITIZER_MARKERS, Zhttpd

KEEPALIVE_MS = 200
EXPIRE_S = 5 * KEEPALIVE_MS / 1000.0


class Instance:
    def __init__(self, rundir, iid):
        self.rundir = rundir
        self.iid = iid
        self.http_port = free_port()
        self.sbase = free_base_port(3)
        self.cbase = free_base_port(3)
        self.d = None
        self.starts = 0

    def start(self):
        self.starts += 1
        self.d = Zhttpd(["--id", self.iid, "--workers", "1", "--log-level", "3",
                         "--listen", f"127.0.0.1:{self.http_port}",
                         "--zclient-stream", f"tcp://127.0.0.1:{self.sbase}",
                         "--zserver-stream", f"tcp://127.0.0.1:{self.cbase}",
                         "--server-keepalive-ms", str(KEEPALIVE_MS)],
                        self.rundir, name=f"{self.iid}-{self.starts}")
        self.d.start(ready=rf"ready: id {self.iid}, .*client role on, server role on")
        return self


class Pool:
    """One handler (PULL + ROUTER + PUB) and one requester (PUSH + ROUTER + SUB), each socket
    connected to every instance."""

    def __init__(self, ctx, instances, ident=b"pool-1"):
        self.ident = ident
        self.rq_ident = ident + b"-rq"

        def sock(kind, **opts):
            s = ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            for k, v in opts.items():
                s.setsockopt(getattr(zmq, k), v)
            return s

        self.pull = sock(zmq.PULL)
        self.router = sock(zmq.ROUTER, ROUTING_ID=ident, ROUTER_MANDATORY=1)
        self.pub = sock(zmq.PUB)
        # IMMEDIATE: new requests go only to instances with a live connection; without it a
        # connecting PUSH keeps a queue for an instance that died and round-robins into it
        self.push = sock(zmq.PUSH, IMMEDIATE=1)
        self.rrouter = sock(zmq.ROUTER, ROUTING_ID=self.rq_ident, ROUTER_MANDATORY=1)
        self.sub = sock(zmq.SUB, SUBSCRIBE=self.rq_ident + b" ")
        for i in instances:
            for s, base in ((self.pull, i.sbase), (self.router, i.sbase + 1),
                            (self.pub, i.sbase + 2), (self.push, i.cbase),
                            (self.rrouter, i.cbase + 1), (self.sub, i.cbase + 2)):
                s.connect(f"tcp://127.0.0.1:{base}")
        self.poller = zmq.Poller()
        for s in (self.pull, self.router, self.sub):
            self.poller.register(s, zmq.POLLIN)
        # Inbound sessions are keyed by (instance id, session id): ids are unique per instance
        # only (both instances number theirs "0-0-1", ...), as ZHTTP says.
        self.seq = {}        # key -> next seq we send
        self.last = {}       # key -> monotonic time the instance last spoke of it
        self.requests = []   # inbound request packets, in order
        self.cancels = set()
        self.replies = {}    # client-role rid -> [packets]
        self.probes = set()  # probe ids answered with cancel
        self.n_probe = 0

    def close(self):
        for s in (self.pull, self.router, self.pub, self.push, self.rrouter, self.sub):
            s.close(0)

    def _next(self, rid):
        n = self.seq.get(rid, 0)
        self.seq[rid] = n + 1
        return n

    # -- receiving --
    def pump(self, timeout=0.05):
        now = time.monotonic
        for s, _ in self.poller.poll(int(timeout * 1000)):
            if s is self.pull:
                pkt = tns.loads(self.pull.recv()[1:])
                self.requests.append(pkt)
                # a request packet starts a new session, even under an id seen before (a
                # restarted instance numbers its sessions from the start again)
                self.seq[(pkt["from"], pkt["id"])] = 0
                self.last[(pkt["from"], pkt["id"])] = now()
            elif s is self.router:
                frames = self.router.recv_multipart()
                pkt = tns.loads(frames[2][1:])
                ids = pkt["id"] if isinstance(pkt["id"], list) else [{"id": pkt["id"]}]
                for e in ids:  # a multi-id packet (batched keep-alives) names several
                    key = (pkt["from"], e["id"])
                    self.last[key] = now()
                    if pkt.get("type") == b"cancel":
                        self.cancels.add(key)
            else:
                msg = self.sub.recv()
                pkt = tns.loads(msg.split(b" ", 1)[1][1:])
                if pkt["id"].startswith(b"probe-"):
                    if pkt.get("type") == b"cancel":
                        self.probes.add(pkt["id"])
                    continue
                self.replies.setdefault(pkt["id"], []).append(pkt)

    def pump_until(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.pump()

    def wait_paths(self, inst, timeout=10.0):
        """Both paths to inst are up. Handler side: a keep-alive for an unknown session sent on
        the PUB reaches the instance (its server role drops it with a log line). Requester side:
        the same through the ROUTER comes back as a cancel (the client role answers unknown
        sessions with cancel, ZHTTP.md 4.1)."""
        iid = inst.iid.encode()
        deadline = time.monotonic() + timeout
        for side in ("handler", "requester"):
            while True:
                assert time.monotonic() < deadline, f"no {side} path to {iid!r}"
                self.n_probe += 1
                rid = b"probe-%d" % self.n_probe
                if side == "handler":
                    pkt = {"from": self.ident, "id": rid, "seq": 1, "type": "keep-alive"}
                    self.pub.send(iid + b" T" + tns.dumps(pkt))
                    t = time.monotonic() + 0.3
                    while f"'{rid.decode()}' dropped" not in inst.d.log():
                        if time.monotonic() > t:
                            break
                        time.sleep(0.02)
                    else:
                        break
                    continue
                pkt = {"from": self.rq_ident, "id": rid, "seq": 1, "type": "keep-alive"}
                try:
                    self.rrouter.send_multipart([iid, b"", b"T" + tns.dumps(pkt)])
                except zmq.ZMQError:  # not connected yet (ROUTER_MANDATORY)
                    time.sleep(0.05)
                    continue
                t = time.monotonic() + 0.3
                while rid not in self.probes and time.monotonic() < t:
                    self.pump(0.02)
                if rid in self.probes:
                    break

    # -- handler side --
    def reply(self, key, **fields):
        """A packet to inbound session key = (instance id, id), on the PUB with that prefix."""
        pkt = {"from": self.ident, "id": key[1], "seq": self._next(key)}
        pkt.update({k.replace("_", "-"): v for k, v in fields.items()})
        self.pub.send(key[0] + b" T" + tns.dumps(pkt))

    def expired(self, key):
        return time.monotonic() - self.last[key] > EXPIRE_S

    # -- requester side --
    def client_request(self, url, parts):
        """A streamed POST whose body comes in two parts: the first with the request (PUSH, to
        whichever instance), the second through the ROUTER to the instance that answered."""
        self.n_probe += 1
        rid = b"rq-%d" % self.n_probe
        total = sum(len(p) for p in parts)
        self.push.send(b"T" + tns.dumps({
            "from": self.rq_ident, "id": rid, "seq": 0, "method": "POST", "uri": url,
            "headers": [["Content-Length", str(total)]], "body": parts[0], "more": True,
            "stream": True, "credits": 65536, "ignore-policies": True}))
        return rid

    def client_continue(self, rid, body):
        first = self.replies[rid][0]
        pkt = {"from": self.rq_ident, "id": rid, "seq": 1, "body": body}
        self.rrouter.send_multipart([first["from"], b"", b"T" + tns.dumps(pkt)])


def echo_route(method, path, headers, body):
    return 200, [("Content-Type", "text/plain")], b"got %d bytes" % len(body)


def inbound(pool, inst, path):
    """One GET on inst's listener answered by the pool; returns the response."""
    c = HttpConn(inst.http_port)
    c.send(get(path))
    n = len(pool.requests)
    pool.pump_until(lambda: len(pool.requests) > n, what=f"request {path}")
    req = pool.requests[-1]
    assert req["from"] == inst.iid.encode(), req
    pool.reply((req["from"], req["id"]), code=200, reason="OK", headers=[["Content-Type", "text/plain"]],
               body=b"handled for " + req["from"])
    r = c.read_response()
    c.close()
    return r


def client_round(pool, origin, n):
    """n client-role requests through the pool's requester; returns {instance id: count}."""
    rids = [pool.client_request(origin.url("/echo"), [b"a" * 1000, b"b" * 2000]) for _ in range(n)]
    pool.pump_until(lambda: all(pool.replies.get(r) for r in rids), what="client-role first replies")
    for r in rids:
        pool.client_continue(r, b"b" * 2000)
    def data(r):  # the response packets (not credits or keep-alives)
        return [p for p in pool.replies[r] if p.get("type") is None]

    done = lambda r: any(not p.get("more") for p in data(r))
    pool.pump_until(lambda: all(done(r) for r in rids), what="client-role responses")
    by = {}
    for r in rids:
        froms = {p["from"] for p in pool.replies[r]}
        assert len(froms) == 1, froms  # every packet of a session from the instance that took it
        assert data(r)[0]["code"] == 200, data(r)
        assert b"".join(p.get("body", b"") for p in data(r)) == b"got 3000 bytes", data(r)
        f = froms.pop().decode()
        by[f] = by.get(f, 0) + 1
    return by


def client_until_both(pool, origin, n=8, timeout=5.0):
    """Rounds of n client-role requests until both instances have taken some (a PUSH connects to
    a (re)started instance asynchronously, ZeroMQ's reconnect interval is 100 ms); every request is
    answered. Returns {instance id: count} over all rounds."""
    by = {}
    deadline = time.monotonic() + timeout
    while set(by) != {"zA", "zB"}:
        assert time.monotonic() < deadline, f"client-role requests reached only {by}"
        for k, v in client_round(pool, origin, n).items():
            by[k] = by.get(k, 0) + v
    return by


@pytest.fixture
def instances(rundir):
    """instances(iid) makes an Instance; whatever of them still runs at the end is stopped, even
    when the test failed before its own cleanup."""
    made = []

    def make(iid):
        made.append(Instance(rundir, iid))
        return made[-1]

    yield make
    for i in made:
        if i.d is not None and i.d.alive():
            i.d.stop()


def test_two_instances_one_pool(instances, zctx):
    a = instances("zA").start()
    b = instances("zB").start()
    pool = Pool(zctx, [a, b])
    figures = {}
    try:
        with Origin({"/echo": echo_route}) as origin:
            for i in (a, b):
                pool.wait_paths(i)

            # 1. inbound requests on either instance are answered
            for k in range(3):
                for i in (a, b):
                    r = inbound(pool, i, f"/in/{k}")
                    assert r.status == 200 and r.body == b"handled for " + i.iid.encode()

            # 2. client role: PUSH spreads new requests over both instances; each body's second
            #    part goes through the ROUTER to the instance named in the first reply's `from`
            by = client_until_both(pool, origin)
            assert len(origin.requests) == sum(by.values())

            # 3. four streamed sessions on each instance, mid-response; then zA is killed
            conns = {}
            for i in (a, b):
                for k in range(4):
                    c = HttpConn(i.http_port, timeout=10)
                    c.send(get(f"/hold/{i.iid}/{k}"))
                    conns[(i.iid, k)] = c
            pool.pump_until(lambda: len(pool.requests) >= 6 + 8, what="held requests")
            held = pool.requests[6:]
            for req in held:
                pool.reply((req["from"], req["id"]), code=200, reason="OK",
                           headers=[["Content-Type", "text/plain"]], body=b"part1;", more=True)
            for (iid, k), c in conns.items():
                while b"part1;" not in c.buf:
                    assert c._fill(), f"{iid}/{k} closed early"
            ids = {n: [(r["from"], r["id"]) for r in held if r["from"] == n.encode()]
                   for n in ("zA", "zB")}
            assert len(ids["zA"]) == 4 and len(ids["zB"]) == 4
            # keep-alives come from both instances for their sessions
            since = time.monotonic()
            pool.pump_until(lambda: all(pool.last[r] > since for r in ids["zA"] + ids["zB"]),
                            what="keep-alives from both instances")

            t_kill = time.monotonic()
            a.d.stop(sig=signal.SIGKILL, expect_rc=-signal.SIGKILL)
            # zA's sessions expire at the handler; zB's keep getting keep-alives
            pool.pump_until(lambda: all(pool.expired(r) for r in ids["zA"]),
                            timeout=10, what="zA's sessions to expire")
            figures["expiry_s"] = time.monotonic() - t_kill
            assert not any(pool.expired(r) for r in ids["zB"])
            assert not pool.cancels & set(ids["zB"]), pool.cancels
            # new client-role requests meanwhile all go to zB (the PUSH skips the dead peer)
            by_dead = client_round(pool, origin, 4)
            assert by_dead == {"zB": 4}, by_dead
            for r in ids["zB"]:
                pool.reply(r, body=b"part2.")
            for k in range(4):
                c = conns[("zB", k)]
                c.buf = b""  # the head and part1 were read above; read the rest of the chunked body
                while b"part2.\r\n0\r\n\r\n" not in c.buf:
                    assert c._fill(), f"zB/{k} closed before its end: {c.buf!r}"
                # zA's clients lost their connection with the process
                assert conns[("zA", k)].read_until_closed(5) is not None
            for c in conns.values():
                c.close()

            # 4. zA restarts with the same id and ports; the same pool sockets find it again
            t_restart = time.monotonic()
            a.start()
            pool.wait_paths(a)
            figures["rejoin_s"] = time.monotonic() - t_restart
            for k in range(2):
                for i in (a, b):
                    r = inbound(pool, i, f"/again/{k}")
                    assert r.status == 200 and r.body == b"handled for " + i.iid.encode()
            by2 = client_until_both(pool, origin, n=6)
        print(f"\nscale-out figures: client-role sessions per instance {by}; zA killed: its 4 "
              f"sessions expired at the handler after {figures['expiry_s']:.2f} s (keepalive "
              f"{KEEPALIVE_MS} ms), zB's 4 finished, client-role requests meanwhile {by_dead}; "
              f"zA restarted and rejoined in {figures['rejoin_s']:.2f} s ({by2})")
    finally:
        pool.close()
        for i in (a, b):
            if i.d.alive():
                i.d.stop()


def test_pushpin_as_the_pool_of_two_instances(instances, rundir, tmp_path):
    """The same recipe with Pushpin 1.36 as the handler: its runner starts only zurl (zhttpd),
    pushpin-proxy and pushpin-handler, whose condure_* specs list both instances' tcp endpoints
    (the two zhttpd instances are started by the test, as on two machines). Proxied GETs on either
    listener are answered; one publish reaches a Grip stream held on each instance; zA killed, zB
    goes on; zA restarted with the same id is used again by the same Pushpin."""
    a, b = instances("zA"), instances("zB")
    for i in (a, b):  # server role only, as condure would run
        i.d = Zhttpd(["--id", i.iid, "--workers", "1", "--listen", f"127.0.0.1:{i.http_port}",
                      "--zclient-stream", f"tcp://127.0.0.1:{i.sbase}"], rundir, name=f"pp-{i.iid}")
        i.d.start()
    base = tmp_path / "pp"
    (base / "run").mkdir(parents=True)
    (base / "log").mkdir()
    wrapper = base / "zurl"
    wrapper.write_text(f'#!/bin/sh\nexec "{build_dir() / "zhttpd"}" "$@"\n')
    wrapper.chmod(0o755)
    pub_port = free_port()

    def specs(offset):
        return ",".join(f"tcp://127.0.0.1:{i.sbase + offset}" for i in (a, b))

    with AioOrigin(setup_origin) as origin:
        (base / "routes").write_text(f"* 127.0.0.1:{origin.port}\n")
        (base / "pushpin.conf").write_text(f"""[global]
include={{libdir}}/internal.conf
rundir={base}/run
ipc_prefix=pushpin-
[runner]
services=zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:{free_port()}
logdir={base}/log
log_level=2
zurl_bin={wrapper}
[proxy]
routesfile={base}/routes
condure_in_specs={specs(0)}
condure_in_stream_specs={specs(1)}
condure_out_specs={specs(2)}
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
sig_key=changeme
updates_check=off
[handler]
condure_in_stream_specs={specs(1)}
condure_out_specs={specs(2)}
push_in_spec=ipc://{base}/run/push-in
push_in_sub_specs=ipc://{base}/run/push-sub
push_in_http_addr=127.0.0.1
push_in_http_port={pub_port}
command_spec=ipc://{base}/run/command
stats_spec=ipc://{base}/run/stats
""")
        logf = open(base / "pushpin.log", "wb")
        pp = subprocess.Popen(["pushpin", "--config", str(base / "pushpin.conf"), "--merge-output"],
                              stdout=logf, stderr=subprocess.STDOUT, cwd=base, start_new_session=True)

        def get_ok(inst, timeout=2):
            try:
                c = http.client.HTTPConnection("127.0.0.1", inst.http_port, timeout=timeout)
                c.request("GET", "/hello")
                r = c.getresponse()
                ok = (r.status, r.read()) == (200, b"hello GET 0 e3b0c44298fc1c14\n")
                c.close()
                return ok
            except (OSError, http.client.HTTPException):
                return False

        def wait_ok(inst, timeout=15):
            deadline = time.monotonic() + timeout
            while not pushpin_ready(inst.http_port):
                assert pp.poll() is None, (base / "pushpin.log").read_text()
                assert time.monotonic() < deadline, (base / "pushpin.log").read_text()
                time.sleep(0.1)

        def publish(chan, content):
            c = http.client.HTTPConnection("127.0.0.1", pub_port, timeout=10)
            c.request("POST", "/publish/", body=json.dumps({"items": [
                {"channel": chan, "formats": {"http-stream": {"content": content}}}]}))
            assert c.getresponse().status == 200
            c.close()

        try:
            for i in (a, b):
                wait_ok(i)
            for _ in range(3):
                assert get_ok(a, 10) and get_ok(b, 10)
            # one publish, two held streams, one on each instance
            streams = []
            for i in (a, b):
                s = HttpConn(i.http_port, timeout=10)
                s.send(get("/grip/stream/two", host="127.0.0.1"))
                while b"stream open\n" not in s.buf:
                    assert s._fill(), s.buf
                streams.append(s)
            time.sleep(0.3)
            publish("two", "to both\n")
            for s in streams:
                while b"to both\n" not in s.buf:
                    assert s._fill(), s.buf
                s.close()
            # zA dies: zB goes on; zA restarts with the same id and ports: Pushpin uses it again
            a.d.stop(sig=signal.SIGKILL, expect_rc=-signal.SIGKILL)
            assert get_ok(b, 10)
            a.d = Zhttpd(["--id", "zA", "--workers", "1", "--listen", f"127.0.0.1:{a.http_port}",
                          "--zclient-stream", f"tcp://127.0.0.1:{a.sbase}"], rundir, name="pp-zA-2")
            a.d.start()
            wait_ok(a)
            assert get_ok(b, 10)
        finally:
            pp.terminate()
            try:
                pp.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(pp.pid, signal.SIGKILL)  # its own session: only what we started
                pp.wait()
            logf.close()
            for i in (a, b):
                if i.d.alive():
                    i.d.stop()
    text = (base / "pushpin.log").read_text()
    assert not any(m in text for m in SANITIZER_MARKERS), text
    assert text.count("[main] stopped") == 1, text  # the zhttpd Pushpin ran as its zurl
