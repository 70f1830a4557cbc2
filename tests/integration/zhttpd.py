"""Start and stop the real zhttpd binary for integration tests.

Every daemon runs with its own run directory; its stderr goes to a log file that tests can wait on.
stop() checks the exit status and that no sanitizer report was printed (the suite runs against the
ASan+UBSan build in CI)."""
import os
import pathlib
import re
import signal
import subprocess
import time

from conftest import build_dir

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


class Zhttpd:
    def __init__(self, args, rundir: pathlib.Path, name="zhttpd", binary=None, env=None):
        self.args = [str(a) for a in args]
        self.rundir = pathlib.Path(rundir)
        self.binary = str(binary or build_dir() / "zhttpd")
        self.log_path = self.rundir / f"{name}.log"
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self._log = None

    def start(self, ready=r"ready", timeout=10.0):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary] + self.args, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.rundir, env=self.env)
        if ready:
            self.wait_log(ready, timeout)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern, timeout=10.0, count=1):
        """Wait until pattern (a regex) has matched count times in the log; return the log."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            text = self.log()
            if len(rx.findall(text)) >= count:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"zhttpd exited ({self.proc.returncode}) before /{pattern}/:\n{text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for /{pattern}/ in log:\n{text}")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0, expect_rc=0):
        """Signal the daemon, wait for it, and check exit code and sanitizer output. Returns the
        time it took to exit in seconds."""
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"zhttpd did not exit within {timeout}s of {sig!r}:\n{self.log()}")
        took = time.monotonic() - t0
        self._log.close()
        text = self.log()
        for marker in SANITIZER_MARKERS:
            assert marker not in text, f"sanitizer report in zhttpd output:\n{text}"
        if expect_rc is not None:
            assert self.proc.returncode == expect_rc, \
                f"zhttpd exit code {self.proc.returncode}, expected {expect_rc}:\n{text}"
        return took


def run_once(args, rundir, timeout=10.0):
    """Run zhttpd to completion (for startup errors, --help, --version); returns (rc, output)."""
    p = subprocess.run([str(build_dir() / "zhttpd")] + [str(a) for a in args], cwd=rundir,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in out, f"sanitizer report in zhttpd output:\n{out}"
    return p.returncode, out
