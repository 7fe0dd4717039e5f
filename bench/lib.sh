# shellcheck shell=bash disable=SC2034  # BUILD_NOTE and T are for the caller
# bench/lib.sh: what submit.sh, sink.sh and deliver.sh share. Sourced, not run.
# The caller sets REPO_ROOT, RELAYMAIL_BIN and BENCH_NO_BUILD, and defines cleanup().

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
fs_type() { { findmnt -no FSTYPE -T "$1" 2>/dev/null || stat -f -c %T "$1"; } | head -1; }

# require_root WHY
require_root() {
    [[ $(id -u) -eq 0 ]] || die "run as root ($1)"
}

# make_tmp NAME: sets T to a new temp dir (mode 755: peers that drop privileges
# must traverse it) on BENCH_TMPDIR, arms cleanup, and warns when fsync is free there.
make_tmp() {
    local base=${BENCH_TMPDIR:-${TMPDIR:-/tmp}} fs
    T=$(mktemp -d "$base/relaymail-$1.XXXXXX")
    [[ $T != *[[:space:]]* ]] || die "the temp dir path must not contain spaces: $T"
    chmod 755 "$T"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    fs=$(fs_type "$T")
    log "temp dir $T (filesystem: $fs)"
    if [[ $fs == tmpfs || $fs == ramfs ]]; then
        log "WARNING: $T is on $fs: fsync costs nothing there; set BENCH_TMPDIR to a disk."
    fi
    : >"$T/versions.txt"
}

# apt_install PACKAGE...: installs them quietly (no recommends).
apt_install() {
    ((${#@})) || return 0
    log "installing: $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# fetch_deb NAME: download NAME's .deb, unpack it to $T/root-NAME, and install the
# shared libraries it depends on (plain lib* packages, never an MTA) if missing.
fetch_deb() {
    local name=$1 deb dep libs=()
    mkdir -p "$T/debs"
    if ! (cd "$T/debs" && apt-get download -qq -o APT::Sandbox::User=root "$name" >/dev/null 2>&1); then
        log "apt-get update (for $name)"
        apt-get update -qq >/dev/null
        (cd "$T/debs" && apt-get download -qq -o APT::Sandbox::User=root "$name" >/dev/null)
    fi
    deb=$(ls "$T/debs/${name}"_*.deb)
    mkdir -p "$T/root-$name"
    dpkg -x "$deb" "$T/root-$name"
    echo "$name $(dpkg-deb -f "$deb" Version)" >>"$T/versions.txt"
    for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/[|(].*//; s/ //g'); do
        if [[ $dep == lib* ]] && ! dpkg -s "$dep" >/dev/null 2>&1; then
            libs+=("$dep")
        fi
    done
    apt_install "${libs[@]}"
}

# build_relaymail: makes sure RELAYMAIL_BIN exists and, when it is the repo's
# own release binary, is not older than the sources (cargo build --release).
# Sets BUILD_NOTE for the report. Returns 1 (with a note) when the binary is
# missing and BENCH_NO_BUILD=1.
build_relaymail() {
    local stale=0
    BUILD_NOTE="as found"
    if [[ $RELAYMAIL_BIN != "$REPO_ROOT/target/release/relaymail" ]]; then
        [[ -x $RELAYMAIL_BIN ]] || die "no relaymail binary at $RELAYMAIL_BIN"
        return 0
    fi
    if [[ ! -x $RELAYMAIL_BIN ]] ||
        [[ -n $(find "$REPO_ROOT/src" "$REPO_ROOT/Cargo.toml" "$REPO_ROOT/Cargo.lock" -newer "$RELAYMAIL_BIN" -print -quit 2>/dev/null) ]]; then
        stale=1
    fi
    if ((stale)) && [[ $BENCH_NO_BUILD == 1 ]]; then
        if [[ ! -x $RELAYMAIL_BIN ]]; then
            log "SKIPPING relaymail: $RELAYMAIL_BIN does not exist (BENCH_NO_BUILD=1)"
            return 1
        fi
        BUILD_NOTE="older than the sources (BENCH_NO_BUILD=1)"
    elif ((stale)); then
        command -v cargo >/dev/null || die "$RELAYMAIL_BIN is missing or stale and cargo is not installed"
        log "building relaymail (cargo build --release)"
        if (cd "$REPO_ROOT" && cargo build --release) >"$T/cargo-build.log" 2>&1; then
            BUILD_NOTE="built by this run"
        elif [[ -x $RELAYMAIL_BIN ]]; then
            BUILD_NOTE="STALE: cargo build --release failed, the existing (older) binary was used"
            log "WARNING: cargo build failed; using the existing binary $RELAYMAIL_BIN"
            tail -20 "$T/cargo-build.log" >&2
        else
            tail -40 "$T/cargo-build.log" >&2
            die "cargo build --release failed"
        fi
    fi
}
