"""Kubernetes resource quantities (``512Mi``, ``1.5``, ``1500m``) → bytes, CPU quota, CPU sets.

Pure functions.  The grammar is Kubernetes' ``resource.Quantity``: a non-negative decimal
number followed by a binary suffix (Ki Mi Gi Ti Pi Ei), a decimal suffix (n u m k M G T P E)
or a decimal exponent (``e6``, ``E3``).  Each error message names the forms that are accepted,
because the user only sees that one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from kube_lxcfs.errors import KubeLxcfsError

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(
    r"^\+?(?P<number>\d+(?:\.\d*)?|\.\d+)"
    r"(?:(?P<binary>Ki|Mi|Gi|Ti|Pi|Ei)|[eE](?P<exponent>[+-]?\d+)|(?P<decimal>[numkMGTPE]?))$"
)

MEMORY_FORMS = "bytes with an optional suffix, e.g. 512Mi, 1Gi, 1.5Gi, 500M, 1G, 268435456, 1e9"
CPU_FORMS = "a number of CPUs, e.g. 1, 1.5, 0.5, or millicores, e.g. 500m, 1500m"
CPUSET_FORMS = "CPU numbers and ranges, e.g. 0, 0-1, 0,2-3"

CFS_PERIOD_US = 100_000
"""The CFS period Kubernetes and Docker use; the quota is ``cpus × period``."""
MIN_QUOTA_US = 1_000
"""The kernel refuses quotas below 1 ms."""
MAX_QUANTITY_CHARS = 64
MAX_EXPONENT = 64
"""Longer text or larger exponents are no quantity anyone means (and cost time to compute)."""
MAX_MEMORY = 2**63 - 1
"""The largest limit a cgroup file takes (a signed 64-bit byte count, about 8Ei)."""
MAX_CPUS = 8192
"""The most CPUs a Linux kernel can have (NR_CPUS); a larger quota or CPU number is a typo."""


class QuantityError(KubeLxcfsError, ValueError):
    """A value that is not a quantity of the expected kind; the message is for the user."""


def _shown(text: str) -> str:
    """``text`` quoted for a one-line message, cut short when it is long."""
    return repr(text if len(text) <= 32 else f"{text[:32]}...")


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity, or :class:`QuantityError`."""
    match = _QUANTITY.match(text.strip()) if len(text) <= MAX_QUANTITY_CHARS else None
    if match is None or abs(int(match["exponent"] or 0)) > MAX_EXPONENT:
        raise QuantityError(f"{_shown(text)} is not a quantity")
    value = Fraction(match["number"])
    if match["binary"]:
        return value * 1024 ** _BINARY[match["binary"]]
    if match["exponent"] is not None:
        return value * Fraction(10) ** int(match["exponent"])
    return value * Fraction(10) ** _DECIMAL[match["decimal"]]


def parse_memory(text: str) -> int:
    """Bytes for ``--memory`` / ``--memory-swap``; fractions of a byte round up like Kubernetes."""
    try:
        value = parse_quantity(text)
    except QuantityError:
        raise QuantityError(f"{_shown(text)} is not a memory size; use {MEMORY_FORMS}") from None
    size = math.ceil(value)
    if size <= 0:
        raise QuantityError(f"{_shown(text)} is not a positive memory size; use {MEMORY_FORMS}")
    if size > MAX_MEMORY:
        raise QuantityError(f"{_shown(text)} is too large a memory size (the limit is below 8Ei)")
    return size


@dataclass(frozen=True)
class CpuQuota:
    """A CFS bandwidth limit: ``quota_us`` of CPU time every ``period_us``."""

    quota_us: int
    period_us: int = CFS_PERIOD_US

    @property
    def cpus(self) -> Fraction:
        """The limit in CPUs (may be fractional)."""
        return Fraction(self.quota_us, self.period_us)

    @property
    def visible_cpus(self) -> int:
        """How many CPUs the virtual files show for this quota: rounded up (as lxcfs, JVM, .NET)."""
        return math.ceil(self.cpus)


def parse_cpus(text: str) -> CpuQuota:
    """The CFS quota for ``--cpus`` (``1.5`` or ``1500m`` → 150000 µs per 100000 µs)."""
    try:
        value = parse_quantity(text)
    except QuantityError:
        raise QuantityError(f"{_shown(text)} is not a CPU amount; use {CPU_FORMS}") from None
    if value > MAX_CPUS:
        raise QuantityError(f"{_shown(text)} is more CPUs than Linux supports ({MAX_CPUS})")
    quota_us = math.ceil(value * CFS_PERIOD_US)
    if quota_us < MIN_QUOTA_US:
        raise QuantityError(
            f"{_shown(text)} is below the smallest CPU limit (10m = 0.01 CPU); use {CPU_FORMS}"
        )
    return CpuQuota(quota_us=quota_us)


def parse_cpuset(text: str) -> frozenset[int]:
    """CPU numbers of a cpuset list (``0-2,5``), as the kernel's ``cpuset.cpus`` writes them."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        match = re.fullmatch(r"(\d{1,6})(?:-(\d{1,6}))?", part.strip())
        if match is None:
            raise QuantityError(f"{_shown(text)} is not a CPU list; use {CPUSET_FORMS}")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise QuantityError(f"{_shown(text)} has a descending range; use {CPUSET_FORMS}")
        if last >= MAX_CPUS:
            raise QuantityError(f"{_shown(text)} names a CPU above Linux's {MAX_CPUS - 1}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def format_cpuset(cpus: frozenset[int] | set[int]) -> str:
    """The kernel's list form of a CPU set: ``{0, 1, 2, 5}`` → ``0-2,5``."""
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu == _range_end(ranges[-1]) + 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def _range_end(item: str) -> int:
    return int(item.rsplit("-", 1)[-1])
