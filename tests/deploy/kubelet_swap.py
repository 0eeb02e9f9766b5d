#!/usr/bin/env python3
"""Reproduce the kubelet's atomic ConfigMap update in a plain directory.

A ConfigMap volume (without subPath) looks like this inside the pod:

    /etc/switchyard/
        ..2026_05_09_07_30_00.123456789/      real files, one dir per version
            switchyard.toml
        ..data -> ..2026_05_09_07_30_00.123456789
        switchyard.toml -> ..data/switchyard.toml

On an update the kubelet (pkg/volume/util/atomic_writer.go) writes the new
version into a fresh timestamped directory, points a temporary symlink
`..data_tmp` at it, rename(2)s `..data_tmp` over `..data` (the one atomic
step), fixes up the user-visible symlinks for added/removed keys and deletes
the old directory. The user-visible path `switchyard.toml` itself is never
written: its inode (a symlink) stays the same and only what it resolves to
changes. A watcher must therefore watch the *directory* (rename of `..data`,
IN_MOVED_TO / IN_CREATE on `..data`) or re-resolve the path; watching the file's
inode (or the old target) misses every update after the first.

Use from a test::

    from kubelet_swap import ConfigMapDir
    cm = ConfigMapDir(tmp_path / "config")
    cm.write({"switchyard.toml": OLD})        # initial mount
    start_relay(config=cm.path / "switchyard.toml")
    cm.write({"switchyard.toml": NEW})        # kubelet-style atomic swap
    wait_until_reloaded()

or from a shell::

    python3 tests/deploy/kubelet_swap.py write DIR switchyard.toml=path/to/new.toml
    python3 tests/deploy/kubelet_swap.py --selftest
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Union

DATA_DIR = "..data"
DATA_DIR_TMP = "..data_tmp"

Content = Union[str, bytes]


def _timestamp_prefix(now: _dt.datetime | None = None) -> str:
    # The kubelet uses os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("..%Y_%m_%d_%H_%M_%S.")


class ConfigMapDir:
    """A directory laid out and updated exactly like a kubelet ConfigMap volume."""

    def __init__(self, path: Union[str, os.PathLike], file_mode: int = 0o644):
        self.path = Path(path)
        self.file_mode = file_mode

    # -- inspection -------------------------------------------------------
    def current_version_dir(self) -> Path | None:
        data = self.path / DATA_DIR
        if not data.is_symlink():
            return None
        return self.path / os.readlink(data)

    def keys(self) -> set[str]:
        cur = self.current_version_dir()
        if cur is None:
            return set()
        return {p.name for p in cur.iterdir()}

    # -- the kubelet's algorithm -------------------------------------------
    def write(self, payload: Mapping[str, Content]) -> Path:
        """Publish `payload` (file name -> content) as the new version.

        The first call creates the layout; later calls perform the atomic
        `..data` swap. Returns the new timestamped directory.
        """
        for name in payload:
            if "/" in name or name.startswith(".."):
                raise ValueError(f"invalid key {name!r}")
        self.path.mkdir(parents=True, exist_ok=True)
        old_dir = self.current_version_dir()
        old_keys = self.keys()

        # 1. Write the new version into a fresh timestamped directory.
        new_dir = Path(tempfile.mkdtemp(prefix=_timestamp_prefix(), dir=self.path))
        os.chmod(new_dir, 0o755)
        for name, content in payload.items():
            target = new_dir / name
            data = content.encode() if isinstance(content, str) else content
            with open(target, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(target, self.file_mode)

        # 2. ..data_tmp -> new dir, then rename(2) over ..data (atomic).
        tmp_link = self.path / DATA_DIR_TMP
        if tmp_link.is_symlink() or tmp_link.exists():
            tmp_link.unlink()
        os.symlink(new_dir.name, tmp_link)
        os.rename(tmp_link, self.path / DATA_DIR)

        # 3. User-visible symlinks: name -> ..data/name for new keys; remove
        #    the ones whose key disappeared.
        for name in payload:
            visible = self.path / name
            if not visible.is_symlink():
                os.symlink(os.path.join(DATA_DIR, name), visible)
        for name in old_keys - set(payload):
            visible = self.path / name
            if visible.is_symlink():
                visible.unlink()

        # 4. Remove the previous version.
        if old_dir is not None and old_dir.exists() and old_dir != new_dir:
            shutil.rmtree(old_dir)
        return new_dir


def kubelet_swap(path: Union[str, os.PathLike], payload: Mapping[str, Content]) -> Path:
    """Functional form of ConfigMapDir(path).write(payload)."""
    return ConfigMapDir(path).write(payload)


# -- self-test ---------------------------------------------------------------
def selftest() -> int:
    failures = 0
    passed = 0

    def check(cond: bool, what: str) -> None:
        nonlocal failures, passed
        passed += bool(cond)
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures += 1

    with tempfile.TemporaryDirectory() as tmp:
        cm = ConfigMapDir(Path(tmp) / "etc-switchyard")
        visible = cm.path / "switchyard.toml"

        v1 = cm.write({"switchyard.toml": "version = 1\n"})
        check(v1.name.startswith("..") and v1.is_dir(), "initial version directory is ..<timestamp>")
        check(os.readlink(cm.path / DATA_DIR) == v1.name, "..data points at the first version")
        check(os.readlink(visible) == "..data/switchyard.toml", "switchyard.toml -> ..data/switchyard.toml")
        check(visible.read_text() == "version = 1\n", "content of version 1 readable through the symlink")
        link_inode = os.lstat(visible).st_ino
        real_v1 = os.path.realpath(visible)

        # A reader that holds the old file open keeps reading version 1.
        with open(visible) as held:
            v2 = cm.write({"switchyard.toml": "version = 2\n", "extra.toml": "x = 1\n"})
            check(held.read() == "version = 1\n", "a file opened before the swap still reads the old version")
        check(visible.read_text() == "version = 2\n", "after the swap the path reads version 2")
        check(os.lstat(visible).st_ino == link_inode, "the visible symlink itself was not replaced")
        check(os.path.realpath(visible) != real_v1, "the visible path resolves to a new file")
        check(not v1.exists(), "the old version directory was removed")
        check(not (cm.path / DATA_DIR_TMP).exists(), "no ..data_tmp left behind")
        check((cm.path / "extra.toml").read_text() == "x = 1\n", "added key appears as a symlink")

        cm.write({"switchyard.toml": "version = 3\n"})
        check(not (cm.path / "extra.toml").is_symlink(), "removed key's symlink disappears")
        check(not v2.exists(), "second version directory removed")
        entries = sorted(p.name for p in cm.path.iterdir())
        check(len([e for e in entries if e.startswith("..") and e != DATA_DIR]) == 1,
              f"exactly one version directory remains ({entries})")
        check(oct(os.stat(visible).st_mode & 0o777) == oct(0o644), "files are 0644 like the kubelet's default")

    print(f"kubelet_swap selftest: {passed} passed, {failures} failed")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--selftest", action="store_true", help="run the self-test and exit")
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("write", help="publish a new version (creates the layout on first use)")
    w.add_argument("dir")
    w.add_argument("items", nargs="+", metavar="KEY=FILE", help="ConfigMap key and the file holding its content")
    args = ap.parse_args(argv)
    if args.selftest:
        return selftest()
    if args.cmd == "write":
        payload = {}
        for item in args.items:
            key, sep, src = item.partition("=")
            if not sep:
                ap.error(f"expected KEY=FILE, got {item!r}")
            payload[key] = Path(src).read_bytes()
        new = kubelet_swap(args.dir, payload)
        print(new)
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
