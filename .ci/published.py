#!/usr/bin/env python3
"""Prints the workspace's published crates, one name a line, from `cargo metadata`.

A crate is published unless its manifest says `publish = false`.
"""
import json
import subprocess
import sys


def published_ids(metadata):
    """The package ids of the published workspace members, in the workspace's order."""
    publish = {p["id"]: p.get("publish") for p in metadata["packages"]}
    return [m for m in metadata["workspace_members"] if publish[m] != []]


def published(metadata):
    names = {p["id"]: p["name"] for p in metadata["packages"]}
    return sorted(names[m] for m in published_ids(metadata))


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
