"""One source for --help, zhttpd(8) and docs/configuration.md: daemon/config.c's option table
(issue 16 item 3). zhttpd-doc (packaging/zhttpd-doc.c) writes the man page at build time and the
markdown reference; these tests fail when any of them misses a flag or key of --help, or when the
committed docs/configuration.md differs from what the table gives (fix: bash scripts/gen-docs.sh)."""
import re
import subprocess

from conftest import REPO, build_dir


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def help_entries():
    text = run(str(build_dir() / "zhttpd"), "--help")
    flags = set(re.findall(r"^\s{2}(?:-\w, )?(--[a-z][a-z0-9-]+)", text, re.M))
    keys = set(re.findall(r"^\s{4}([a-z_0-9]+)=", text, re.M))
    assert len(flags) > 20 and len(keys) > 20
    return flags, keys


def test_configuration_md_is_generated_from_the_table():
    fresh = run(str(build_dir() / "zhttpd-doc"), "markdown",
                str(REPO / "packaging" / "configuration.md.in"))
    committed = (REPO / "docs" / "configuration.md").read_text()
    assert committed == fresh, "docs/configuration.md is stale: run bash scripts/gen-docs.sh"


def test_man_page_and_reference_hold_every_flag_and_key_of_help():
    flags, keys = help_entries()
    man = (build_dir() / "zhttpd.8").read_text().replace("\\-", "-")
    md = (REPO / "docs" / "configuration.md").read_text()
    man_flags = set(re.findall(r"^\.B[IR]? (?:-\w \", \" )?(--[a-z][a-z0-9-]+)", man, re.M))
    man_keys = set(re.findall(r"^\.BI ([a-z_0-9]+)= ", man, re.M))
    md_flags = set(re.findall(r"`(?:-\w`, `)?(--[a-z][a-z0-9-]+)", md))
    md_keys = set(re.findall(r"^\| `([a-z_0-9]+)=", md, re.M))
    assert man_flags == flags
    assert man_keys == keys
    assert md_flags >= flags and md_keys == keys


def test_defaults_agree_with_help():
    """Each default --help prints appears with that flag in the man page."""
    text = run(str(build_dir() / "zhttpd"), "--help")
    man = (build_dir() / "zhttpd.8").read_text().replace("\\-", "-").replace("\\ ", " ")
    for flag, default in re.findall(r"^\s{2}(--[a-z][a-z0-9-]+)[^\n]*?(?:\n\s{20,}[^\n]*?)*?"
                                    r"\[default: ([^\]]+)\]", text, re.M):
        entry = man.split(f"\n.BI {flag} ", 1)[1].split("\n.TP", 1)[0]
        assert f"[default: {default}]" in " ".join(entry.split()), (flag, default, entry)


def test_generator_rejects_bad_usage():
    r = subprocess.run([str(build_dir() / "zhttpd-doc"), "html", "x"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
