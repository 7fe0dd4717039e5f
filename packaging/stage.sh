# Sourced by build-deb and build-rpm: copies the working tree (tracked and
# untracked files that git does not ignore) to
# target/packaging/src/relaymail-VERSION and sets $work, $src, $version.
# The target directory of the build is $CARGO_TARGET_DIR, else
# target/packaging/cargo, so that the same staged path rebuilds
# incrementally.
stage_source() {
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
    work="$repo/target/packaging"
    src="$work/src/relaymail-$version"
    # One build at a time uses the staged tree (held until the script ends).
    mkdir -p "$work"
    exec 9>"$work/stage.lock"
    flock 9
    rm -rf "$src"
    mkdir -p "$src"
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' file; do
            # Deleted but not yet committed: not part of the tree.
            if [ -e "$file" ] || [ -L "$file" ]; then printf '%s\0' "$file"; fi
        done | tar --null -T - -cf -) | tar -xf - -C "$src"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$work/cargo}
}
