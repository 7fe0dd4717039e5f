#!/usr/bin/python3
"""File-context check of the relaymail policy module.

Usage: file_contexts.py FC BASE_FC PATHS [--tree DIR]...

FC is the file_contexts of the policy linked with relaymail.pp, BASE_FC
the same policy's before the link. PATHS (selinux/tests/paths.txt) gives
each path relaymail installs and the type it must get, or "base" for a
path whose label the module must leave as the base policy has it. Each
--tree is an unpacked package (dpkg-deb -x, or rpm2cpio | cpio): every
file, directory and link in it is checked too, by the same table, and as
"base" when the table does not name it.

Lookups are matchpathcon -m (the kind is given, nothing on this host is
looked at), which follows the policy's path aliases
(file_contexts.subs_dist: /sbin -> /usr/sbin and so on).
Prints a line per path and "N passed, N failed"; exits 1 on a failure.
"""

import os
import subprocess
import sys

MODE = {"file": "file", "dir": "dir", "link": "lnk_file"}


def lookup(fc, kind, paths):
    """Type of each path under `fc`, by matchpathcon -m."""
    if not paths:
        return {}
    out = subprocess.run(["matchpathcon", "-m", MODE[kind], "-f", fc, *paths],
                         capture_output=True, text=True, check=False)
    types = {}
    for line in out.stdout.splitlines():
        path, _, context = line.rpartition("\t")
        if not path:
            path, _, context = line.rpartition(" ")
        parts = context.split(":")
        types[path] = parts[2] if len(parts) > 2 else context
    for path in paths:
        types.setdefault(path, "<no answer: " + out.stderr.strip() + ">")
    return types


def read_table(path):
    table = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kind, p, want = line.split()
            if kind not in MODE:
                raise SystemExit(f"{path}:{number}: unknown kind {kind!r}")
            table.append((kind, p, want))
    return table


def walk(tree):
    found = []
    for top, dirs, files in os.walk(tree):
        for name in dirs + files:
            full = os.path.join(top, name)
            rel = "/" + os.path.relpath(full, tree)
            if os.path.islink(full):
                found.append(("link", rel))
            elif os.path.isdir(full):
                found.append(("dir", rel))
            else:
                found.append(("file", rel))
    return found


def main(argv):
    fc, base_fc, paths_file = argv[:3]
    trees = []
    rest = argv[3:]
    while rest:
        if rest[0] == "--tree" and len(rest) > 1:
            trees.append(rest[1])
            rest = rest[2:]
        else:
            raise SystemExit(f"unknown argument {rest[0]!r}")
    table = read_table(paths_file)
    want = {(k, p): t for k, p, t in table}
    entries = [(k, p, t, "paths.txt") for k, p, t in table]
    for tree in trees:
        for kind, p in walk(tree):
            entries.append((kind, p, want.get((kind, p), "base"), tree))

    got, base = {}, {}
    for kind in MODE:
        ps = sorted({p for k, p, _, _ in entries if k == kind})
        got.update({(kind, p): t for p, t in lookup(fc, kind, ps).items()})
        base.update({(kind, p): t for p, t in lookup(base_fc, kind, ps).items()})

    results = []
    seen = set()
    for kind, p, expected, origin in entries:
        if (kind, p, origin) in seen:
            continue
        seen.add((kind, p, origin))
        have = got[(kind, p)]
        where = "" if origin == "paths.txt" else f"  [{os.path.basename(origin.rstrip('/'))}]"
        if expected == "base":
            ok = have == base[(kind, p)] and have not in ("default_t", "unlabeled_t")
            detail = f"{have}, base policy {base[(kind, p)]}"
            what = f"{kind} {p} keeps its base label {base[(kind, p)]}"
        else:
            ok = have == expected
            detail = f"it is {have}"
            what = f"{kind} {p} is {expected}"
        results.append(ok)
        print(("ok    " if ok else "FAIL  ") + what + where + ("" if ok else f" ({detail})"))
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
