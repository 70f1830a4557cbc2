"""The installed zhttpd as the packaged service runs it, without systemd (run by test_packages.py
as root inside `unshare --mount --net`, so /run and 127.0.0.1 are private to this run and a
zhttpd, zurl or condure running on the machine is neither seen nor disturbed).

From the installed unit it takes ExecStart, User, Group, UMask, RuntimeDirectory and
RuntimeDirectoryMode, and does what systemd does with them: a fresh /run/RUNTIMEDIR owned by
User:Group with RuntimeDirectoryMode, then ExecStart as User:Group (no new privileges) with UMask,
and a NOTIFY_SOCKET (Type=notify). The config is the packaged /etc/zhttpd/zhttpd.conf, unchanged.

Then, as the user `nobody` with the supplementary group zhttpd (another user in group zhttpd), the
packaged example handler connects to the server role's ipc sockets and answers a curl request, and
the packaged example requester reaches the client role's ipc socket (and is refused the loopback
origin by the packaged policy). As `nobody` without that group, the sockets cannot be opened.
Prints one PASS/FAIL line per check; exits 1 on the first failure."""
import configparser
import grp
import os
import pwd
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile

UNIT = sys.argv[1] if len(sys.argv) > 1 else "/lib/systemd/system/zhttpd.service"
EXAMPLES = "/usr/share/doc/zhttpd/examples"
PY = "/usr/bin/python3"
procs = []


def check(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""),
          flush=True)
    if not ok:
        raise SystemExit(1)


def unit_settings(path):
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read(path)
    return cp["Service"]


def main():
    svc = unit_settings(UNIT)
    user, group = svc["User"], svc["Group"]
    umask = int(svc["UMask"], 8)
    rtdir = "/run/" + svc["RuntimeDirectory"]
    rtmode = int(svc["RuntimeDirectoryMode"], 8)
    argv = shlex.split(svc["ExecStart"])
    pw, gr = pwd.getpwnam(user), grp.getgrnam(group)
    check(f"unit runs as {user}:{group}, UMask {svc['UMask']}, {rtdir} mode {svc['RuntimeDirectoryMode']}",
          user == "zhttpd" and umask == 0o007 and rtmode == 0o750)

    # What systemd does before ExecStart: a private /run here, then the runtime directory.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "zhttpd-test-run", "/run"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.mkdir(rtdir)
    os.chown(rtdir, pw.pw_uid, gr.gr_gid)
    os.chmod(rtdir, rtmode)

    notify_dir = tempfile.mkdtemp(prefix="zhttpd-notify-")
    os.chown(notify_dir, pw.pw_uid, gr.gr_gid)
    notify_path = os.path.join(notify_dir, "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    os.chown(notify_path, pw.pw_uid, gr.gr_gid)
    notify.settimeout(20)

    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": notify_path, "LANG": "C.UTF-8"}
    daemon = subprocess.Popen(
        ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={gr.gr_gid}", "--init-groups",
         "--no-new-privs", "--"] + argv,
        env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(umask))
    procs.append(daemon)
    try:
        msg = notify.recv(4096).decode()
    except socket.timeout:
        msg = ""
    check("zhttpd (packaged config) sent READY=1", "READY=1" in msg.split("\n"),
          msg or daemon.stdout.read1(65536).decode(errors="replace"))
    st = os.stat(f"/proc/{daemon.pid}")
    exe = os.readlink(f"/proc/{daemon.pid}/exe")
    check(f"it runs as {user} ({exe})", st.st_uid == pw.pw_uid and exe == argv[0],
          f"uid {st.st_uid} exe {exe}")

    socks = sorted(n for n in os.listdir(rtdir) if stat.S_ISSOCK(os.lstat(f"{rtdir}/{n}").st_mode))
    bad = []
    for name in socks:
        s = os.lstat(os.path.join(rtdir, name))
        if stat.S_IMODE(s.st_mode) != 0o660 or \
                s.st_uid != pw.pw_uid or s.st_gid != gr.gr_gid:
            bad.append(f"{name} {oct(s.st_mode)} {s.st_uid}:{s.st_gid}")
    check(f"ipc sockets in {rtdir} are {user}:{group} 0660: {' '.join(socks)}",
          socks and not bad, "; ".join(bad))

    nobody = pwd.getpwnam("nobody")

    def as_other(cmd, groups):
        g = ["--groups=" + ",".join(str(x) for x in groups)] if groups else ["--clear-groups"]
        return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"] + g + \
            ["--no-new-privs", "--"] + cmd

    # Not in group zhttpd: the directory (0750) keeps it out.
    r = subprocess.run(as_other([PY, "-c", f"import socket; s = socket.socket(socket.AF_UNIX); "
                                           f"s.connect('{rtdir}/client-out')"], None),
                       capture_output=True, text=True, cwd="/")
    check("a user outside group zhttpd cannot open the ipc sockets",
          r.returncode != 0 and "PermissionError" in r.stderr, r.stderr)

    # In group zhttpd: the packaged example handler serves the packaged listener.
    base = "ipc://" + rtdir + "/client"
    handler = subprocess.Popen(as_other([PY, "-u", f"{EXAMPLES}/basichandler.py", base], [gr.gr_gid]),
                               cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={"PATH": env["PATH"], "LANG": "C.UTF-8"})
    procs.append(handler)
    port = None
    for line in open("/etc/zhttpd/zhttpd.conf"):
        if line.startswith("listen="):
            port = int(line.split("=", 1)[1].split(",")[0].rsplit(":", 1)[1])
    r = subprocess.run(["curl", "-sS", "-i", "--max-time", "20", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True)
    check(f"handler as nobody in group {group} answers curl on 127.0.0.1:{port} through "
          f"{base}", r.stdout.startswith("HTTP/1.1 200") and "hello world" in r.stdout,
          r.stdout + r.stderr)
    check("handler process runs as nobody", os.stat(f"/proc/{handler.pid}").st_uid == nobody.pw_uid)

    # The client role's req socket, from the same user: the packaged policy refuses loopback.
    r = subprocess.run(as_other([PY, f"{EXAMPLES}/zurl_get.py", f"ipc://{rtdir}/zurl-req",
                                 f"http://127.0.0.1:{port}/"], [gr.gr_gid]),
                       capture_output=True, text=True, cwd="/", timeout=30)
    check("requester in group zhttpd reaches the client role; the packaged policy refuses loopback",
          "error: policy-violation" in r.stdout + r.stderr, r.stdout + r.stderr)

    daemon.send_signal(signal.SIGTERM)
    try:
        msg = notify.recv(4096).decode()
    except socket.timeout:
        msg = ""
    check("SIGTERM: STOPPING=1", "STOPPING=1" in msg.split("\n"), msg)
    rc = daemon.wait(30)
    out = daemon.stdout.read().decode(errors="replace")
    check("zhttpd exits 0", rc == 0, out)


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
