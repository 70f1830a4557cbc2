# Sourced, not run. A policy-rc.d guard for package installs: while it is on, invoke-rc.d refuses
# (exit 101) to start or stop any service, so installing zurl, condure, nginx or zhttpd starts
# nothing on this machine. A policy-rc.d that was already there is kept aside and put back
# byte-identical (same bytes, mode, owner and times); when there was none, none is left behind.
#
#   . scripts/policy-guard.sh
#   policy_guard_on        # installs the trap that undoes it on EXIT, INT and TERM
#   ... apt-get install / dpkg -i ...
#   policy_guard_off       # idempotent; also run by the trap, including on failure
#
# ZH_POLICY_RC_D overrides the path (tests use a scratch file).

ZH_POLICY_RC_D=${ZH_POLICY_RC_D:-/usr/sbin/policy-rc.d}
_zh_guard_saved=""   # directory holding the original, when there was one
_zh_guard_active=0

policy_guard_off() {
    [ "$_zh_guard_active" = 1 ] || return 0
    if [ -n "$_zh_guard_saved" ]; then
        # mv within the same directory tree of the backup keeps the inode's bytes and metadata.
        mv -f "$_zh_guard_saved/policy-rc.d" "$ZH_POLICY_RC_D"
        rmdir "$_zh_guard_saved"
        _zh_guard_saved=""
    else
        rm -f "$ZH_POLICY_RC_D"
    fi
    _zh_guard_active=0
}

policy_guard_on() {
    [ "$_zh_guard_active" = 0 ] || return 0
    trap 'policy_guard_off' EXIT
    trap 'policy_guard_off; exit 130' INT
    trap 'policy_guard_off; exit 143' TERM
    if [ -e "$ZH_POLICY_RC_D" ] || [ -L "$ZH_POLICY_RC_D" ]; then
        # Keep the original beside it (same filesystem: mv renames, nothing is rewritten).
        _zh_guard_saved=$(mktemp -d "$(dirname "$ZH_POLICY_RC_D")/.policy-rc.d.zhttpd.XXXXXX")
        mv "$ZH_POLICY_RC_D" "$_zh_guard_saved/policy-rc.d"
    fi
    _zh_guard_active=1
    printf '#!/bin/sh\n# zhttpd scripts/policy-guard.sh: no service starts during this install\nexit 101\n' \
        > "$ZH_POLICY_RC_D"
    chmod 0755 "$ZH_POLICY_RC_D"
}
