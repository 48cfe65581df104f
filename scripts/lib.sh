# Shared by scripts/setup and scripts/test (sourced, not run).

# Debian packages zonevisor needs on the host: the runtime (btrfs pool,
# nftables, ip and tc, dnsmasq for the default network's DHCP and DNS,
# uidmap, lxcfs for the zones' /proc; zonevisord runs its
# own lxcfs, so Debian's lxcfs service need not run), image formats (xz,
# zstd), fixture builds (busybox-static, mmdebstrap), building
# (gcc, libc6-dev and pkg-config for the C parts; Rust itself comes from
# rustup, see ensure_rust), reading the man pages
# (man-db, groff-base), completion (bash-completion; zsh, whose completion
# the tests run too) and checking the systemd unit (systemd, for
# systemd-analyze; installing it does not make it the init), and the OCI
# tests' registry (docker-registry, run by the tests only; Debian's service
# need not run) with the tools that push images to it (skopeo, umoci).
ZONEVISOR_APT_PACKAGES=(
    btrfs-progs busybox-static mmdebstrap nftables iproute2 dnsmasq-base uidmap lxcfs
    xz-utils zstd ca-certificates gcc libc6-dev pkg-config util-linux
    man-db groff-base bash-completion zsh systemd
    qemu-utils qemu-system-x86 ovmf seabios
    docker-registry skopeo umoci
)

phase() { printf '\n==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "run this as root (it installs packages, mounts btrfs and starts zones)"
}

# Cargo for root is usually in ~/.cargo/bin, which sudo and CI shells may
# not have on PATH.
ensure_cargo_on_path() {
    if ! command -v cargo >/dev/null 2>&1; then
        for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin /usr/local/cargo/bin; do
            if [ -x "$d/cargo" ]; then PATH="$d:$PATH"; export PATH; break; fi
        done
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup: $ZONEVISOR_RUSTUP"
}

# The workspace's rust-version (Cargo.toml). Debian 12's own rustc is 1.63.
ZONEVISOR_RUST_MIN=1.85
ZONEVISOR_RUSTUP="curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"

# Cargo on PATH, and a Rust new enough to build zonevisor.
ensure_rust() {
    ensure_cargo_on_path
    local version
    version="$(rustc --version 2>/dev/null | awk '{print $2}')"
    version="${version%%-*}"
    if [ -z "$version" ] || ! printf '%s\n%s\n' "$ZONEVISOR_RUST_MIN" "$version" | sort -V -C; then
        die "Rust ${version:-?} is too old: zonevisor needs Rust >= $ZONEVISOR_RUST_MIN (Debian 12's rustc is 1.63); install it with rustup: $ZONEVISOR_RUSTUP"
    fi
}

# Prints the packages of "$@" that are not installed.
missing_packages() {
    local p status
    for p in "$@"; do
        status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || echo "$p"
    done
}

# Installs whatever of ZONEVISOR_APT_PACKAGES is missing, running
# `apt-get update` first (only when something is missing).
install_packages() {
    local missing
    mapfile -t missing < <(missing_packages "${ZONEVISOR_APT_PACKAGES[@]}")
    if [ "${#missing[@]}" -eq 0 ]; then
        note "all ${#ZONEVISOR_APT_PACKAGES[@]} packages present"
        return 0
    fi
    note "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}
