"""The .deb and the .rpm in dist/ (built by scripts/package.sh), checked as issue 16 asks.

Run as root by scripts/test.sh after scripts/package.sh:
    /usr/bin/python3 -m pytest -v -p no:cacheprovider tests/package

Static checks: lintian (no override file), rpmlint (only no-signature filtered), rpm -qpR, the same
regular files in both, conffiles, Build-Depends against what the binary links.
Install checks, in file order, on this machine: the .deb is installed under the policy-rc.d guard
(scripts/policy-guard.sh: no service starts; an existing policy-rc.d is put back) by a bash holder
whose EXIT trap purges the package, so a crash of pytest still purges it. The last test ends the
holder and checks what the purge left: only the system user may stay."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
VERSION = re.search(r"project\(zhttpd VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())[1]
UNIT = "/lib/systemd/system/zhttpd.service"


def one(pattern):
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in dist/ (run scripts/package.sh): {found}"
    return found[0]


DEB = one("zhttpd_*.deb")
RPM = one("zhttpd-*.rpm")


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check:
        assert r.returncode == 0, f"{cmd} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


# ---- static checks ----

def test_lintian_clean_without_overrides():
    overrides = [p for p in (REPO / "debian").rglob("*") if "lintian-overrides" in p.name]
    assert overrides == []
    r = run("lintian", "--fail-on", "error,warning", str(DEB), check=False)
    print(r.stdout + r.stderr)
    assert r.returncode == 0


def test_rpmlint_only_no_signature_allowed():
    rc = (REPO / "packaging" / "zhttpd.rpmlintrc").read_text()
    rules = [ln for ln in rc.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert rules == ['addFilter("no-signature")']
    r = run("rpmlint", "-c", str(REPO / "packaging" / "rpmlint.toml"), "-r",
            str(REPO / "packaging" / "zhttpd.rpmlintrc"), str(RPM), check=False)
    print(r.stdout)
    errors = [ln for ln in r.stdout.splitlines() if ": E: " in ln]
    assert r.returncode == 0 and errors == [] and " 0 errors" in r.stdout
    # without the filter, no-signature is the only error
    r = run("rpmlint", "-c", str(REPO / "packaging" / "rpmlint.toml"), str(RPM), check=False)
    errors = [ln.split(": E: ")[1] for ln in r.stdout.splitlines() if ": E: " in ln]
    assert errors == ["no-signature"], r.stdout


def test_rpm_requires_only_sonames_rpmlib_rtld_sh():
    req = run("rpm", "-qpR", str(RPM)).stdout.splitlines()
    prov = run("rpm", "-qpP", str(RPM)).stdout.splitlines()
    print(" ".join(req))
    allowed = re.compile(r"^(lib[\w.+-]+\.so\.[\d.]+\(\S*\)\(64bit\)|rpmlib\(\w+\) <= [\d.-]+|"
                         r"rtld\(GNU_HASH\)|/bin/sh)$")
    # rpmbuild adds config(N) = EVR for every package with a %config file; the package provides it
    # itself, so it pulls in nothing.
    self_dep = [r for r in req if r.startswith("config(zhttpd) = ")]
    assert all(r in prov for r in self_dep), (self_dep, prov)
    other = [r for r in req if not allowed.match(r) and r not in self_dep]
    assert other == []
    assert any(r.startswith("libzmq.so.5") for r in req)


def deb_files():
    out = run("dpkg-deb", "-c", str(DEB)).stdout.splitlines()
    files = {}
    for ln in out:
        parts = ln.split(None, 5)
        if ln.startswith("-"):
            path = parts[5][1:]
            files[path] = parts[0]
    return files


def rpm_files():
    out = run("rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILENAMES}\n]", str(RPM)).stdout
    return {ln.split(" ", 1)[1]: ln.split(" ", 1)[0] for ln in out.splitlines() if ln.startswith("-")}


def test_deb_and_rpm_ship_the_same_files():
    deb = {re.sub(r"^/lib/systemd/", "/usr/lib/systemd/", p): m for p, m in deb_files().items()}
    debian_only = {"/usr/share/doc/zhttpd/copyright", "/usr/share/doc/zhttpd/changelog.gz"}
    assert debian_only <= set(deb)
    for p in debian_only:
        del deb[p]
    rpm = rpm_files()
    print(f"{len(rpm)} regular files in both")
    assert sorted(deb) == sorted(rpm)
    assert deb == rpm, "modes differ"
    for must in ("/usr/bin/zhttpd", "/etc/zhttpd/zhttpd.conf", "/usr/lib/systemd/system/zhttpd.service",
                 "/usr/lib/sysusers.d/zhttpd.conf", "/usr/share/man/man8/zhttpd.8.gz",
                 "/usr/share/licenses/zhttpd/LICENSE", "/usr/share/doc/zhttpd/examples/basichandler.py"):
        assert must in rpm
    examples = {p: m for p, m in rpm.items() if "/examples/" in p}
    assert examples and set(examples.values()) == {"-rw-r--r--"}
    # the changelog and the license: in the rpm's header and file list
    assert "0.1.0" in run("rpm", "-qp", "--changelog", str(RPM)).stdout


def test_config_is_a_conffile_in_both():
    conffiles = run("dpkg-deb", "-f", str(DEB), "Package").stdout  # sanity: readable
    assert conffiles.strip() == "zhttpd"
    info = run("dpkg-deb", "--info", str(DEB), "conffiles").stdout.split()
    assert info == ["/etc/zhttpd/zhttpd.conf"]
    assert run("rpm", "-qpc", str(RPM)).stdout.split() == ["/etc/zhttpd/zhttpd.conf"]
    flags = run("rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", str(RPM)).stdout
    assert "cn /etc/zhttpd/zhttpd.conf" in flags  # %config(noreplace)


def test_build_depends_are_the_linked_libraries(tmp_path):
    """debian/control's lib*-dev Build-Depends provide exactly the sonames the binary needs."""
    control = (REPO / "debian" / "control").read_text()
    bd = re.search(r"^Build-Depends:(.*?)^\S", control, re.S | re.M)[1]
    devs = sorted(re.findall(r"(?<![\w.+-])([a-z0-9][\w.+-]*-dev)\b", bd))  # zlib1g-dev too
    run("dpkg-deb", "-x", str(DEB), str(tmp_path))
    needed = set(re.findall(r"NEEDED\s+(\S+)", run("objdump", "-p", str(tmp_path / "usr/bin/zhttpd")).stdout))
    needed -= {"libc.so.6", "libm.so.6"}  # libc6, from build-essential
    provided = {}
    for dev in devs:
        for f in run("dpkg", "-L", dev).stdout.splitlines():
            if f.endswith(".so") and os.path.exists(f):
                m = re.search(r"SONAME\s+(\S+)", run("objdump", "-p", os.path.realpath(f)).stdout)
                if m:
                    provided.setdefault(dev, set()).add(m[1])
    print({d: sorted(s) for d, s in provided.items()})
    assert sorted(provided) == devs, "a -dev package in Build-Depends provides no library"
    assert set().union(*provided.values()) >= needed, "a linked library has no Build-Depends"
    unused = [d for d, s in provided.items() if not (s & needed)]
    assert unused == [], "Build-Depends on libraries the binary does not link"


# ---- install checks (root) ----

class Holder:
    """bash: guard on, dpkg -i; the EXIT trap runs dpkg -P and puts the guard back."""

    def __init__(self):
        script = f"""
set -u
. "{REPO}/scripts/policy-guard.sh"
policy_guard_on
purge() {{ dpkg -P zhttpd >/tmp/zhttpd-purge.$$.log 2>&1; echo "purge rc=$?"; policy_guard_off; }}
trap 'purge' EXIT
dpkg -i "{DEB}" || exit 1
echo INSTALLED
read -r _
"""
        self.p = subprocess.Popen(["bash", "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log = []
        for line in self.p.stdout:
            self.log.append(line)
            if line.strip() in ("INSTALLED", ) or line.startswith("purge rc="):
                break
        self.installed = self.log and self.log[-1].strip() == "INSTALLED"

    def finish(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.log += self.p.stdout.readlines()
            self.p.wait(120)
        return "".join(self.log)


@pytest.fixture(scope="module")
def installed():
    if os.geteuid() != 0:
        pytest.fail("the install checks need root (scripts/test.sh runs them as root)")
    st = run("dpkg-query", "-W", "-f=${Status}", "zhttpd", check=False).stdout
    if "installed" in st and "not-installed" not in st:
        pytest.fail("a zhttpd package is already installed here: the install checks would replace "
                    "and purge it, so they refuse to run")
    policy = pathlib.Path("/usr/sbin/policy-rc.d")
    policy_before = policy.read_bytes() if policy.exists() else None
    files = [ln.split(None, 5)[5][1:] for ln in run("dpkg-deb", "-c", str(DEB)).stdout.splitlines()]
    preexisting = {f.rstrip("/") for f in files if os.path.lexists(f.rstrip("/") or "/")}
    h = Holder()
    assert h.installed, "".join(h.log)
    state = {"holder": h, "files": files, "preexisting": preexisting, "policy_before": policy_before}
    yield state
    h.finish()


def zhttpd_processes():
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe") == "/usr/bin/zhttpd":
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def test_install_under_guard_starts_no_service(installed):
    print("".join(installed["holder"].log[-3:]))
    assert b"exit 101" in pathlib.Path("/usr/sbin/policy-rc.d").read_bytes()
    assert zhttpd_processes() == []


def test_version_runs_from_path(installed):
    assert shutil.which("zhttpd") == "/usr/bin/zhttpd"
    assert run("zhttpd", "--version").stdout.strip() == f"zhttpd {VERSION}"


def test_system_user_and_group_from_sysusers(installed):
    import grp
    import pwd
    pw = pwd.getpwnam("zhttpd")
    assert pw.pw_uid < 1000 and pw.pw_gid == grp.getgrnam("zhttpd").gr_gid
    assert pw.pw_shell.endswith("nologin") and pw.pw_dir == "/nonexistent"


def test_systemd_analyze_verify(installed):
    r = run("systemd-analyze", "verify", UNIT, check=False)
    print(r.stdout + r.stderr)
    assert r.returncode == 0 and "zhttpd.service" not in r.stdout + r.stderr


def test_systemd_analyze_security_ok_or_better(installed):
    r = run("systemd-analyze", "security", "--offline=true", "--no-pager", UNIT, check=False)
    last = [ln for ln in r.stdout.splitlines() if "Overall exposure level" in ln]
    print(last[0] if last else r.stdout + r.stderr)
    m = re.search(r"Overall exposure level for zhttpd.service: ([\d.]+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert m[2] in ("OK", "SAFE"), m[0]


def test_man_page_renders_with_every_flag(installed):
    env = dict(os.environ, MANWIDTH="100", LANG="C.UTF-8")
    r = run("man", "--warnings", "-l", "/usr/share/man/man8/zhttpd.8.gz", env=env)
    assert r.stderr.strip() == "", r.stderr
    text = r.stdout
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "CONFIGURATION FILE", "SIGNALS", "EXIT STATUS",
                    "FILES", "SYSTEMD"):
        assert f"\n{section}\n" in text, section
    helptext = run("zhttpd", "--help").stdout
    flags = set(re.findall(r"(--[a-z][a-z0-9-]+)", helptext))
    keys = set(re.findall(r"^\s{4}([a-z_0-9]+)=", helptext, re.M))
    assert flags and keys
    missing = sorted(f for f in flags | keys if f not in text)
    assert missing == []


def test_runtime_as_the_unit_runs_it(installed):
    r = run("unshare", "--mount", "--net", "--propagation", "private", sys.executable,
            str(REPO / "tests" / "package" / "runtime_scenario.py"), UNIT, check=False, timeout=180)
    print(r.stdout + r.stderr)
    assert r.returncode == 0


def test_purge_removes_everything_but_the_user(installed):
    log = installed["holder"].finish()
    print(log.strip().splitlines()[-1])
    assert "purge rc=0" in log
    left = sorted(f for f in installed["files"]
                  if f.rstrip("/") and os.path.lexists(f.rstrip("/"))
                  and f.rstrip("/") not in installed["preexisting"])
    extra = [p for p in ("/etc/zhttpd", "/usr/share/doc/zhttpd", "/var/lib/zhttpd", "/run/zhttpd",
                         "/etc/systemd/system/multi-user.target.wants/zhttpd.service",
                         "/var/lib/systemd/deb-systemd-helper-enabled/zhttpd.service.dsh-also",
                         "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/"
                         "zhttpd.service")
             if os.path.lexists(p)]
    user = run("getent", "passwd", "zhttpd", check=False).stdout.strip()
    print("left after dpkg -P:", left + extra, "| user:", user or "(none)")
    assert left == [] and extra == []
    st = run("dpkg-query", "-W", "-f=${Status}", "zhttpd", check=False).stdout
    assert "installed" not in st or "not-installed" in st
    policy = pathlib.Path("/usr/sbin/policy-rc.d")
    assert (policy.read_bytes() if policy.exists() else None) == installed["policy_before"]
