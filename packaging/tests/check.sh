#!/usr/bin/env bash
# Checks of the packaging: the systemd unit, the modules-load list, the Debian package and the
# Containerfile. `just package-check`, or `bash packaging/tests/check.sh` from anywhere.
#
# It builds the .deb (`cargo deb`, a release build: minutes the first time), so it is not part
# of `just test`. KNP_DEB=path/to.deb checks that package instead of building one. Optional
# tools are used when present, and each check that needs a missing one says it is skipped:
# systemd-analyze, shellcheck, hadolint, modinfo (with this kernel's modules), and root with
# unshare (the maintainer scripts' behaviour, with stubbed systemd tools in a private mount
# namespace). It changes nothing but target/ (the build), a temporary directory and that
# namespace, and installs nothing but cargo-deb (`cargo install`) when it is missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
unit_src=packaging/systemd/kube-nftproxy.service
modules_src=packaging/systemd/kube-nftproxy-modules.conf
containerfile=packaging/container/Containerfile
unit_name=kube-nftproxy.service
kubeconfig=/etc/kube-nftproxy/kubeconfig

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
not_ok() { failed=$((failed + 1)); echo "FAIL $*"; }
skip() { skipped=$((skipped + 1)); echo "skip $*"; }
# check DESCRIPTION COMMAND...: runs the command, quietly; its output is shown when it fails.
check() {
    local what=$1
    shift
    if "$@" >"$tmp/out" 2>&1; then
        ok "$what"
    else
        not_ok "$what"
        sed 's/^/     | /' "$tmp/out"
    fi
}
have() { command -v "$1" >/dev/null 2>&1; }

# --- the unit's directives ---------------------------------------------------------------------

# The values of KEY in a unit file (comments and blank lines skipped), one per line, in order.
values() {
    sed -n "s/^[[:space:]]*$2[[:space:]]*=[[:space:]]*//p" "$1"
}
# The last value of KEY (systemd: the last assignment wins for single-valued settings).
last() { values "$1" "$2" | tail -n 1; }
# The words of every assignment of a list-valued KEY (an empty assignment resets the list).
words() {
    values "$1" "$2" | awk '$0 == "" { n = 0; delete w; next } { for (i = 1; i <= NF; i++) w[++n] = $i }
        END { for (i = 1; i <= n; i++) print w[i] }'
}
equals() { [ "$1" = "$2" ] || { echo "expected '$2', got '$1'"; return 1; }; }
contains() {
    grep -qxF -- "$2" <<<"$1" || { printf 'expected %s in:\n%s\n' "$2" "$1"; return 1; }
}
# matches VALUE ERE: VALUE matches the whole extended regular expression.
matches() { grep -qxE -- "$2" <<<"$1" || { echo "'$1' does not match $2"; return 1; }; }
# lacks TEXT ERE: no line of TEXT matches ERE (the ones that do are printed).
lacks() { ! grep -E -- "$2" <<<"$1"; }
# empty TEXT: TEXT is empty (else printed).
empty() { [ -z "$1" ] || { echo "$1"; return 1; }; }

unit_checks() {
    local unit=$1
    check "unit: Type=notify" equals "$(last "$unit" Type)" notify
    check "unit: NotifyAccess=main" equals "$(last "$unit" NotifyAccess)" main
    check "unit: WatchdogSec set (the agent pings every half)" \
        matches "$(last "$unit" WatchdogSec)" '[1-9][0-9]*(s|min)?'
    check "unit: Restart=always" equals "$(last "$unit" Restart)" always
    check "unit: RestartSec set" test -n "$(last "$unit" RestartSec)"
    check "unit: never gives up restarting (StartLimitIntervalSec=0)" \
        equals "$(last "$unit" StartLimitIntervalSec)" 0
    check "unit: ExecStart" equals "$(last "$unit" ExecStart)" \
        "/usr/bin/kube-nftproxy run --config /etc/kube-nftproxy/config.toml"
    check "unit: CapabilityBoundingSet is exactly CAP_NET_ADMIN" \
        equals "$(words "$unit" CapabilityBoundingSet | sort -u | tr '\n' ' ')" "CAP_NET_ADMIN "
    check "unit: AmbientCapabilities is exactly CAP_NET_ADMIN" \
        equals "$(words "$unit" AmbientCapabilities | sort -u | tr '\n' ' ')" "CAP_NET_ADMIN "
    local families
    families=$(words "$unit" RestrictAddressFamilies)
    for family in AF_NETLINK AF_UNIX AF_INET AF_INET6; do
        check "unit: RestrictAddressFamilies includes $family" contains "$families" "$family"
    done
    check "unit: no ExecStop that flushes (stopping leaves the rules in place)" \
        lacks "$(cat "$unit")" '^[[:space:]]*ExecStop(Post)?[[:space:]]*=.*(cleanup|flush|delete|nft)'
    for key in PrivateNetwork PrivateUsers; do
        check "unit: $key off (the agent programs the host's network namespace)" \
            matches "$(last "$unit" "$key")" '(no)?'
    done
    check "unit: not started without the kubeconfig" \
        equals "$(last "$unit" ConditionPathExists)" "$kubeconfig"
    check "unit: KUBECONFIG names the file the condition waits for" \
        contains "$(values "$unit" Environment)" "KUBECONFIG=$kubeconfig"
    check "unit: ConfigurationDirectory=kube-nftproxy" \
        equals "$(last "$unit" ConfigurationDirectory)" kube-nftproxy
    for key in NoNewPrivileges ProtectHome PrivateTmp ProtectKernelModules LockPersonality \
        MemoryDenyWriteExecute ProtectClock; do
        check "unit: $key=yes" equals "$(last "$unit" "$key")" yes
    done
    check "unit: ProtectSystem=strict" equals "$(last "$unit" ProtectSystem)" strict
    check "unit: SystemCallFilter allows @system-service" \
        contains "$(words "$unit" SystemCallFilter)" "@system-service"
    check "unit: WantedBy=multi-user.target" equals "$(last "$unit" WantedBy)" multi-user.target
}

echo "# the systemd unit ($unit_src)"
unit_checks "$unit_src"

# --- the modules-load list ---------------------------------------------------------------------

echo "# the kernel modules ($modules_src)"
modules=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$modules_src" | tr -d ' \t')
check "modules: one module name per line" lacks "$modules" '[^a-z0-9_]'
# Every kernel expression the netlink backend emits (new(c"NAME") in crates/nft/src/batch.rs),
# and the module that provides it. A new expression fails here until it is mapped (and its
# module listed): the service cannot autoload modules (ProtectKernelModules=yes).
module_of() {
    case $1 in
    payload | meta | cmp | bitwise | lookup | immediate | dynset | range | counter) echo nf_tables ;;
    ct) echo nft_ct ;;
    nat) echo nft_nat ;;
    masq) echo nft_masq ;;
    numgen) echo nft_numgen ;;
    fib) echo nft_fib_ipv4 nft_fib_ipv6 ;;
    reject) echo nft_reject_ipv4 nft_reject_ipv6 ;;
    *) return 1 ;;
    esac
}
expressions=$(grep -oE 'new\(c"[a-z_]+"\)' crates/nft/src/batch.rs | sed -E 's/new\(c"(.*)"\)/\1/' | sort -u)
check "modules: found the backend's expressions in crates/nft/src/batch.rs" test -n "$expressions"
for expr in $expressions; do
    if needed=$(module_of "$expr"); then
        for module in $needed; do
            check "modules: $module (for the '$expr' expression)" contains "$modules" "$module"
        done
    else
        not_ok "modules: the backend uses the expression '$expr', which this check does not know: list its module in $modules_src and map it in module_of"
    fi
done
# Not expressions: `type nat` base chains, and deleting stale UDP flows over ctnetlink.
for module in nft_chain_nat nf_conntrack_netlink; do
    check "modules: $module" contains "$modules" "$module"
done
if have modinfo && [ -d "/lib/modules/$(uname -r)" ]; then
    for module in $modules; do
        check "modules: $module exists for kernel $(uname -r)" modinfo -k "$(uname -r)" "$module"
    done
else
    skip "modules: existence in this kernel (no modinfo or /lib/modules/$(uname -r))"
fi

# --- the Debian package ------------------------------------------------------------------------

echo "# the Debian package"
if [ -n "${KNP_DEB:-}" ]; then
    deb=$KNP_DEB
    echo "     checking $deb (KNP_DEB)"
else
    if ! cargo deb --version >/dev/null 2>&1; then
        echo "     cargo-deb is missing: cargo install cargo-deb --locked"
        cargo install cargo-deb --version '^3.8' --locked
    fi
    started=$(date +%s)
    echo "     cargo deb -p agent --locked (a release build)…"
    if cargo deb -p agent --locked >"$tmp/cargo-deb.log" 2>&1; then
        deb=$(grep -E '^/.*\.deb$' "$tmp/cargo-deb.log" | tail -n 1)
        ok "deb: built $deb in $(($(date +%s) - started)) s"
    else
        not_ok "deb: cargo deb -p agent --locked"
        tail -n 30 "$tmp/cargo-deb.log" | sed 's/^/     | /'
        echo "package-check: $passed passed, $failed failed, $skipped skipped"
        exit 1
    fi
fi

dpkg-deb --info "$deb" >"$tmp/info"
dpkg-deb --field "$deb" Depends >"$tmp/depends"
dpkg-deb --contents "$deb" | awk '{ print $1, $6 }' >"$tmp/contents"
field() { dpkg-deb --field "$deb" "$1"; }
# The package names of a relationship field (versions and alternatives' bars dropped).
names() { field "$1" | sed -e 's/[,|]/\n/g' | sed -e 's/(.*)//' -e 's/[[:space:]]//g' -e '/^$/d'; }

check "deb: Package: kube-nftproxy" equals "$(field Package)" kube-nftproxy
for dep in libnftnl11 libmnl0; do
    check "deb: Depends on $dep" contains "$(names Depends)" "$dep"
done
check "deb: Recommends nftables" contains "$(names Recommends)" nftables
for path in \
    "-rwxr-xr-x ./usr/bin/kube-nftproxy" \
    "-rw-r--r-- ./lib/systemd/system/kube-nftproxy.service" \
    "-rw-r--r-- ./usr/lib/modules-load.d/kube-nftproxy.conf" \
    "-rw-r--r-- ./etc/kube-nftproxy/config.toml" \
    "-rw-r--r-- ./usr/share/doc/kube-nftproxy/README.md" \
    "-rw-r--r-- ./usr/share/doc/kube-nftproxy/architecture.md" \
    "-rw-r--r-- ./usr/share/doc/kube-nftproxy/operating.md" \
    "-rw-r--r-- ./usr/share/doc/kube-nftproxy/copyright"; do
    check "deb: contains ${path#* } (${path%% *})" grep -qxF -- "$path" "$tmp/contents"
done
check "deb: ships no kubeconfig (the operator writes it)" lacks "$(cat "$tmp/contents")" kubeconfig

mkdir "$tmp/root" "$tmp/control"
dpkg-deb --extract "$deb" "$tmp/root"
dpkg-deb --control "$deb" "$tmp/control"
check "deb: config.toml is a conffile" grep -qxF /etc/kube-nftproxy/config.toml "$tmp/control/conffiles"
check "deb: the conffile is config/kube-nftproxy.toml" \
    cmp "$tmp/root/etc/kube-nftproxy/config.toml" config/kube-nftproxy.toml
check "deb: the unit is $unit_src" cmp "$tmp/root/lib/systemd/system/$unit_name" "$unit_src"
check "deb: the modules-load file is $modules_src" \
    cmp "$tmp/root/usr/lib/modules-load.d/kube-nftproxy.conf" "$modules_src"
bin=$tmp/root/usr/bin/kube-nftproxy
check "deb: the binary's libraries resolve" lacks "$(ldd "$bin")" 'not found'
check "deb: the binary runs (--version)" "$bin" --version
check "deb: the binary reads the shipped config.toml" \
    "$bin" config --config "$tmp/root/etc/kube-nftproxy/config.toml"
for script in postinst prerm postrm; do
    check "deb: $script is executable" test -x "$tmp/control/$script"
    check "deb: $script parses (sh -n)" sh -n "$tmp/control/$script"
done

# --- systemd-analyze ---------------------------------------------------------------------------

if have systemd-analyze; then
    # A copy whose ExecStart names the extracted binary: verify checks that ExecStart exists, and
    # nothing is installed on this host. verify exits 0 on unknown keys and bad values, so any
    # line about our unit is a failure.
    mkdir "$tmp/units"
    sed "s#^ExecStart=/usr/bin/kube-nftproxy #ExecStart=$bin #" \
        "$tmp/root/lib/systemd/system/$unit_name" >"$tmp/units/$unit_name"
    verify() {
        local out
        out=$(systemd-analyze verify "$1" 2>&1) || { echo "$out"; return 1; }
        lacks "$out" kube-nftproxy
    }
    check "systemd-analyze verify" verify "$tmp/units/$unit_name"
    # Hardening regressions: the exposure score (0-100) is 21 today.
    check "systemd-analyze security: exposure at most 2.5" \
        systemd-analyze security --offline=true --threshold=25 "$tmp/units/$unit_name"
else
    skip "systemd-analyze verify and security (no systemd-analyze: apt-get install systemd)"
fi

# --- the maintainer scripts' behaviour ---------------------------------------------------------

# Each script runs with the systemd tools replaced by a stub that logs its arguments, in a
# private mount namespace where /run/systemd/system exists (so the scripts act as on a booted
# systemd host) and /lib/systemd/systemd-modules-load is the stub too (no module is loaded).
maintainer_scripts() {
    local stubs=$tmp/stubs log=$tmp/calls
    mkdir -p "$stubs"
    # shellcheck disable=SC2016 # the stub's own $0 and $*
    printf '#!/bin/sh\necho "${0##*/} $*" >>"%s"\nexit 0\n' "$log" >"$stubs/stub"
    chmod 755 "$stubs/stub"
    for tool in deb-systemd-helper deb-systemd-invoke systemctl systemd-modules-load; do
        ln -s stub "$stubs/$tool"
    done
    # run SCRIPT ARGS...: the calls it made, one per line.
    run() {
        : >"$log"
        # shellcheck disable=SC2016 # expanded by the inner sh
        unshare --mount --propagation private env PATH="$stubs:/usr/sbin:/usr/bin:/sbin:/bin" \
            STUB="$stubs/stub" SCRIPT="$tmp/control/$1" sh -c '
            set -e
            mount -t tmpfs tmpfs /run
            mkdir -p /run/systemd/system
            for f in /lib/systemd/systemd-modules-load /usr/bin/deb-systemd-helper; do
                if [ -e "$f" ]; then mount --bind "$STUB" "$f"; fi
            done
            shift
            "$SCRIPT" "$@" >/dev/null' _ "$@"
        cat "$log"
    }
    local calls
    calls=$(run postinst configure "")
    check "postinst (install): enables the unit" contains "$calls" "deb-systemd-helper enable $unit_name"
    check "postinst (install): does not start it" \
        lacks "$calls" 'deb-systemd-invoke|systemctl (start|restart)'
    if [ -e /lib/systemd/systemd-modules-load ]; then
        check "postinst (install): loads the modules" \
            contains "$calls" "systemd-modules-load /usr/lib/modules-load.d/kube-nftproxy.conf"
    fi
    calls=$(run postinst configure 0.0.1-1)
    check "postinst (upgrade): try-restart" contains "$calls" "deb-systemd-invoke try-restart $unit_name"
    check "postinst (upgrade): no start or restart" \
        lacks "$calls" 'deb-systemd-invoke (start|restart) '
    calls=$(run prerm upgrade 0.2.0-1)
    check "prerm (upgrade): does not stop the agent" empty "$calls"
    calls=$(run prerm remove)
    check "prerm (remove): stops the agent" contains "$calls" "deb-systemd-invoke stop $unit_name"
    if [ -e /usr/bin/deb-systemd-helper ]; then
        calls=$(run postrm remove)
        check "postrm (remove): masks the unit" contains "$calls" "deb-systemd-helper mask $unit_name"
        calls=$(run postrm purge)
        check "postrm (purge): forgets the unit" contains "$calls" "deb-systemd-helper purge $unit_name"
    else
        skip "postrm: no /usr/bin/deb-systemd-helper (init-system-helpers)"
    fi
}
if [ "$(id -u)" -eq 0 ] && have unshare && unshare --mount true 2>/dev/null; then
    maintainer_scripts
else
    skip "maintainer scripts' behaviour (needs root and unshare --mount)"
fi

# --- the Containerfile -------------------------------------------------------------------------

echo "# the container image ($containerfile)"
check "image: runtime base debian:bookworm-slim" grep -qx 'FROM debian:bookworm-slim' "$containerfile"
check "image: runtime libraries installed" \
    grep -qE 'apt-get install .*libnftnl11 libmnl0' "$containerfile"
check "image: cleanup --kube-proxy's programs installed (iptables, iproute2, ipvsadm)" \
    grep -qE '^ +iptables iproute2 ipvsadm \\$' "$containerfile"
check 'image: ENTRYPOINT ["/usr/bin/kube-nftproxy"]' \
    grep -qxF 'ENTRYPOINT ["/usr/bin/kube-nftproxy"]' "$containerfile"
check 'image: CMD ["run"]' grep -qxF 'CMD ["run"]' "$containerfile"
for label in version revision source licenses; do
    check "image: label org.opencontainers.image.$label" \
        grep -qE "org\.opencontainers\.image\.$label=" "$containerfile"
done
check "image: licenses Apache-2.0 AND GPL-2.0-or-later" \
    grep -qF 'org.opencontainers.image.licenses="Apache-2.0 AND GPL-2.0-or-later"' "$containerfile"
check "image: .dockerignore keeps target/ out of the build context" grep -qx target .dockerignore
if have hadolint; then
    check "hadolint $containerfile" hadolint "$containerfile"
else
    skip "hadolint (not installed)"
fi

# --- shell scripts -----------------------------------------------------------------------------

echo "# shell scripts"
check "bash -n packaging/tests/check.sh" bash -n packaging/tests/check.sh
if have shellcheck; then
    check "shellcheck packaging/tests/check.sh" shellcheck packaging/tests/check.sh
    for script in postinst prerm postrm; do
        check "shellcheck packaging/debian/$script" shellcheck packaging/debian/$script
    done
else
    skip "shellcheck (not installed: apt-get install shellcheck)"
fi

echo "package-check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
