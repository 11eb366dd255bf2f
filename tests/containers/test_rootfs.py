"""The root filesystem cache: keyed by inputs, built once, complete or absent."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rootfs import FULL, READY_MARK, TINY, RootfsSpec, build_seconds, ensure_rootfs


def test_the_key_changes_with_every_input() -> None:
    keys = {
        TINY.key(),
        FULL.key(),
        dataclasses.replace(TINY, suite="trixie").key(),
        dataclasses.replace(TINY, mirror="http://example.invalid/debian").key(),
        dataclasses.replace(FULL, packages=(*FULL.packages, "jq")).key(),
    }
    assert len(keys) == 5
    assert RootfsSpec("tiny", ("busybox-static",), variant="extract").key() == TINY.key()


def test_an_image_is_built_complete_once_and_an_unfinished_one_is_replaced(
    tmp_path: Path,
) -> None:
    half = TINY.path(tmp_path)
    (half / "bin").mkdir(parents=True)  # an interrupted copy: no ready mark
    image = ensure_rootfs(TINY, cache_root=tmp_path, log=lambda _: None)
    assert image == half
    assert (image / READY_MARK).exists()
    assert os.readlink(image / "bin" / "sh") == "/bin/busybox"
    for mountpoint in ("proc", "sys", "dev", "tmp", "run"):
        assert (image / mountpoint).is_dir()
    assert build_seconds(image) > 0
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [image.name]
    mark = (image / READY_MARK).stat().st_mtime_ns
    assert ensure_rootfs(TINY, cache_root=tmp_path, log=lambda _: None) == image
    assert (image / READY_MARK).stat().st_mtime_ns == mark  # found, not rebuilt
