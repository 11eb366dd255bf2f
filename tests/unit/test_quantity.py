"""Kubernetes quantities for ``kube-lxcfs run``: exact values, and one-line errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kube_lxcfs.sandbox.quantity import (
    CPU_FORMS,
    CPUSET_FORMS,
    MEMORY_FORMS,
    CpuQuota,
    QuantityError,
    format_cpuset,
    parse_cpus,
    parse_cpuset,
    parse_memory,
)
from kube_lxcfs.sandbox.runner import choose_affinity


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512Mi", 536_870_912),
        ("1Gi", 1_073_741_824),
        ("1.5Gi", 1_610_612_736),
        ("4Gi", 4_294_967_296),
        ("1G", 1_000_000_000),
        ("500M", 500_000_000),
        ("128974848", 128_974_848),
        ("1e9", 1_000_000_000),
        ("1E3", 1000),
        ("129e6", 129_000_000),
        ("1k", 1000),
        ("1Ki", 1024),
        ("0.5Ki", 512),
        ("1500m", 2),  # fractions of a byte round up, as Kubernetes does
        ("+1Mi", 1_048_576),
    ],
)
def test_memory_sizes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["5x", "", "Mi", "1.2.3", "-1Gi", "1 Gi", "1gi", "0", "1KiB"])
def test_bad_memory_sizes_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(QuantityError) as exc:
        parse_memory(text)
    assert MEMORY_FORMS in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("text", "quota_us", "visible"),
    [
        ("1", 100_000, 1),
        ("1.5", 150_000, 2),
        ("1500m", 150_000, 2),
        ("0.5", 50_000, 1),
        ("500m", 50_000, 1),
        ("2", 200_000, 2),
        ("10m", 1_000, 1),
        ("2.01", 201_000, 3),
    ],
)
def test_cpus_become_a_quota_rounded_up_for_the_visible_count(
    text: str, quota_us: int, visible: int
) -> None:
    quota = parse_cpus(text)
    assert quota == CpuQuota(quota_us=quota_us, period_us=100_000)
    assert quota.visible_cpus == visible


@pytest.mark.parametrize("text", ["abc", "1m", "0", "-1", "1,5", ""])
def test_bad_cpus_name_the_accepted_forms(text: str) -> None:
    with pytest.raises(QuantityError) as exc:
        parse_cpus(text)
    assert CPU_FORMS in str(exc.value)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0-1", {0, 1}), ("0,2-3", {0, 2, 3}), ("3,1", {1, 3}), ("1-1", {1})],
)
def test_cpusets(text: str, cpus: set[int]) -> None:
    assert parse_cpuset(text) == cpus


@pytest.mark.parametrize("text", ["", "a", "1-0", "0-", "-1", "0,,1", "0 1"])
def test_bad_cpusets(text: str) -> None:
    with pytest.raises(QuantityError) as exc:
        parse_cpuset(text)
    assert CPUSET_FORMS in str(exc.value)


@given(st.frozensets(st.integers(min_value=0, max_value=300), min_size=1))
def test_cpuset_list_form_round_trips(cpus: frozenset[int]) -> None:
    text = format_cpuset(cpus)
    assert parse_cpuset(text) == cpus
    assert format_cpuset(parse_cpuset(text)) == text


def test_cpuset_list_form_uses_ranges() -> None:
    assert format_cpuset({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


def test_affinity_follows_an_explicit_cpuset() -> None:
    assert choose_affinity(frozenset({1}), 2.0, [0, 1, 2, 3], seed=0) == {1}


@pytest.mark.parametrize(("cpus", "count"), [(0.5, 1), (1.0, 1), (1.5, 2), (3.0, 3)])
def test_affinity_narrows_to_the_rounded_up_quota(cpus: float, count: int) -> None:
    for seed in range(6):
        chosen = choose_affinity(None, cpus, [0, 1, 2, 3], seed=seed)
        assert chosen is not None
        assert len(chosen) == count
        assert chosen <= {0, 1, 2, 3}


def test_affinity_is_kept_without_quota_or_when_the_quota_covers_every_cpu() -> None:
    assert choose_affinity(None, None, [0, 1], seed=0) is None
    assert choose_affinity(None, 2.0, [0, 1], seed=0) is None
    assert choose_affinity(None, 8.0, [0, 1], seed=0) is None
