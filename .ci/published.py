#!/usr/bin/env python3
"""Prints the workspace's published crates, one name a line, from `cargo metadata`.

A crate is published unless its manifest says `publish = false`.
"""
import json
import subprocess
import sys


def published(metadata):
    members = set(metadata["workspace_members"])
    return sorted(
        p["name"]
        for p in metadata["packages"]
        if p["id"] in members and p.get("publish") != []
    )


def main():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = published(json.loads(out))
    if not names:
        sys.exit("no published crate in the workspace")
    print("\n".join(names))


if __name__ == "__main__":
    main()
