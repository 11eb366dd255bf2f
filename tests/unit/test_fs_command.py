"""``kube-lxcfs fs`` flags → FsOptions and mount options (no mount needed)."""

from __future__ import annotations

import pytest

from kube_lxcfs.cli import build_parser
from kube_lxcfs.commands.fs import fs_options
from kube_lxcfs.vfs import FsOptions


def _parse(*argv: str):
    return build_parser().parse_args(["fs", *argv])


def test_defaults_are_the_documented_ones() -> None:
    args = _parse("/mnt/x")
    assert fs_options(args) == FsOptions()
    assert str(args.mountpoint) == "/mnt/x"
    assert (args.pidfile, args.mount_options, args.debug) == (None, [], False)


def test_every_flag_maps_to_its_option() -> None:
    args = _parse(
        "-f",
        "-d",
        "-u",
        "--disable-loadavg",
        "--enable-cfs",
        "--cpu-view=cpuset",
        "--cgroup-of",
        "init",
        "-p",
        "/run/k.pid",
        "-o",
        "a,b=1",
        "-o",
        "c",
        "/mnt/x",
    )
    assert fs_options(args) == FsOptions(
        swap=False, loadavg=False, cpu_view="cpuset", cgroup_of="init"
    )
    assert str(args.pidfile) == "/run/k.pid"
    assert args.mount_options == ["a,b=1", "c"]
    assert args.debug is True


def test_lxcfs_compatible_flags_are_accepted_and_change_nothing() -> None:
    assert fs_options(_parse("-l", "--enable-cfs", "-f", "/m")) == FsOptions()
    assert fs_options(_parse("--enable-loadavg", "--foreground", "/m")) == FsOptions()


@pytest.mark.parametrize(
    "argv",
    [
        ("-l", "--disable-loadavg", "/m"),
        ("--cpu-view=shares", "/m"),
        ("--cgroup-of=pod", "/m"),
        (),
    ],
)
def test_bad_usage_exits_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err  # one line: kube-lxcfs fs: what is wrong (see ... --help)
    assert err.startswith("kube-lxcfs fs: ") and len(err.splitlines()) == 1, err
