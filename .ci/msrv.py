#!/usr/bin/env python3
"""Checks the declared MSRV against the dependencies'.

Only one toolchain is installed here, so the MSRV cannot be built; instead, for every published
crate of the workspace, every package in its normal and build dependency graph (all features,
all targets, as locked in Cargo.lock) must declare a `rust-version` no newer than the crate's.
Exits non-zero naming each crate, the dependency, both versions and the path between them.

The crate's own code against the MSRV is clippy's part: `incompatible_msrv` flags std APIs newer
than the declared `rust-version`.
"""
import json
import subprocess
import sys
from collections import deque

from published import published_ids  # the same rule for "published" as the package step


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def normal_deps(node):
    """Ids of a node's normal and build dependencies (dev-dependencies are not built by users)."""
    for dep in node["deps"]:
        if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
            yield dep["pkg"]


def check(metadata):
    packages = {p["id"]: p for p in metadata["packages"]}
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    published = published_ids(metadata)
    problems = []
    unknown = set()
    for root in published:
        crate = packages[root]
        declared = crate.get("rust_version")
        if not declared:
            problems.append(f"{crate['name']}: no rust-version declared")
            continue
        # Breadth-first, remembering how each package was reached.
        parent = {root: None}
        queue = deque([root])
        while queue:
            current = queue.popleft()
            for dep in normal_deps(nodes[current]):
                if dep not in parent:
                    parent[dep] = current
                    queue.append(dep)
        for dep in parent:
            if dep == root:
                continue
            needed = packages[dep].get("rust_version")
            if not needed:
                unknown.add(f"{packages[dep]['name']} {packages[dep]['version']}")
                continue
            if version(needed) > version(declared):
                path = []
                at = dep
                while at is not None:
                    path.append(packages[at]["name"])
                    at = parent[at]
                problems.append(
                    f"{crate['name']} declares rust-version {declared}, but "
                    f"{packages[dep]['name']} {packages[dep]['version']} needs {needed} "
                    f"(through {' -> '.join(reversed(path))})"
                )
    return published, problems, unknown


def main():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    metadata = json.loads(out)
    published, problems, unknown = check(metadata)
    packages = {p["id"]: p for p in metadata["packages"]}
    names = ", ".join(f"{packages[p]['name']} {packages[p]['rust_version']}" for p in published)
    print(f"msrv: checked {names}")
    if unknown:
        print(f"msrv: {len(unknown)} dependencies declare no rust-version: {', '.join(sorted(unknown))}")
    if problems:
        for problem in problems:
            print(f"msrv: {problem}", file=sys.stderr)
        sys.exit(1)
    print("msrv: every dependency builds on the declared rust-version")


if __name__ == "__main__":
    main()
