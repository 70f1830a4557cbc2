"""Scripts and tests touch only what they started (issue 10 item 5).

- No script, test, benchmark or CI step stops a service or kills processes by name.
- scripts/policy-guard.sh (used by scripts/deps.sh and the package install test) keeps an existing
  policy-rc.d byte-identical, leaves none behind when there was none, and undoes itself on failure
  and on SIGTERM. It runs here on a scratch path (ZH_POLICY_RC_D), never on /usr/sbin."""
import os
import re
import signal
import subprocess
import time

from conftest import REPO

GUARD = REPO / "scripts" / "policy-guard.sh"
# Built from pieces so that this file does not match its own pattern.
FORBIDDEN = re.compile(r"\b(p" + r"kill|kill" + r"all)\b|systemctl sto" + r"p|service [a-z]+ sto" + r"p")


def test_no_script_stops_services_or_kills_by_name():
    hits = []
    for top in ("scripts", "tests", "bench", ".ci"):
        for dirpath, _, files in os.walk(REPO / top):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    text = open(path, encoding="utf-8").read()
                except (UnicodeDecodeError, OSError):
                    continue
                for n, line in enumerate(text.splitlines(), 1):
                    if FORBIDDEN.search(line):
                        hits.append(f"{os.path.relpath(path, REPO)}:{n}: {line.strip()}")
    assert hits == []


def test_deps_sh_has_no_stop_or_kill_loop():
    text = (REPO / "scripts" / "deps.sh").read_text()
    assert "policy_guard_on" in text and "policy_guard_off" in text
    assert "SERVICES" not in text and "rm -f /usr/sbin/policy-rc.d" not in text


def guard(tmp_path, body, check=True):
    target = tmp_path / "sbin" / "policy-rc.d"
    target.parent.mkdir(exist_ok=True)
    script = f'set -euo pipefail\n. "{GUARD}"\n{body}\n'
    env = dict(os.environ, ZH_POLICY_RC_D=str(target))
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=20)
    if check:
        assert r.returncode == 0, r.stderr
    return target, r


def test_guard_active_inside(tmp_path):
    target, r = guard(tmp_path, 'policy_guard_on; "$ZH_POLICY_RC_D" zurl start || echo "rc=$?"')
    assert r.stdout.strip() == "rc=101"
    assert not target.exists()
    assert os.listdir(target.parent) == []


def test_guard_keeps_existing_policy_byte_identical(tmp_path):
    target = tmp_path / "sbin" / "policy-rc.d"
    target.parent.mkdir()
    original = b"#!/bin/sh\n# the admin's own policy\nexit 0\n\x00\xff"
    target.write_bytes(original)
    os.chmod(target, 0o750)
    os.utime(target, (1_000_000_000, 1_000_000_000))
    before = os.stat(target)
    _, r = guard(tmp_path, 'policy_guard_on; grep -q "exit 101" "$ZH_POLICY_RC_D" && echo guarded')
    assert r.stdout.strip() == "guarded"
    after = os.stat(target)
    assert target.read_bytes() == original
    assert (after.st_mode, after.st_uid, after.st_mtime, after.st_ino) == \
        (before.st_mode, before.st_uid, before.st_mtime, before.st_ino)
    assert os.listdir(target.parent) == ["policy-rc.d"]


def test_guard_undone_on_failure(tmp_path):
    # none before: none after a failing install
    target, r = guard(tmp_path, "policy_guard_on; false; echo unreachable", check=False)
    assert r.returncode == 1 and "unreachable" not in r.stdout
    assert os.listdir(target.parent) == []
    # one before: the same one after a failing install
    target.write_bytes(b"mine\n")
    target, r = guard(tmp_path, "policy_guard_on; exit 7", check=False)
    assert r.returncode == 7
    assert target.read_bytes() == b"mine\n"
    assert os.listdir(target.parent) == ["policy-rc.d"]


def test_guard_undone_on_sigterm(tmp_path):
    target = tmp_path / "sbin" / "policy-rc.d"
    target.parent.mkdir()
    target.write_bytes(b"mine\n")
    env = dict(os.environ, ZH_POLICY_RC_D=str(target))
    p = subprocess.Popen(["bash", "-c", f'. "{GUARD}"; policy_guard_on; echo on; '
                          'while :; do sleep 0.05; done'], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "on"
        assert b"exit 101" in target.read_bytes()
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 143
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    deadline = time.monotonic() + 5
    while os.listdir(target.parent) != ["policy-rc.d"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.read_bytes() == b"mine\n"
    assert os.listdir(target.parent) == ["policy-rc.d"]
