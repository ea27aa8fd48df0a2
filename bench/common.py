"""What every benchmark shares: result records, the broker it runs on, fresh topics, machine
facts and small timing and ``/proc`` helpers.

Nothing here keeps state between calls: a run gets a :class:`BenchContext` and hands back a
:class:`Report`; the broker and the topics live exactly as long as their context managers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from processor.ops import localbroker
from processor.runtime.admin import contract_topics, ensure_topics
from schemas.topics import Topics

ENV_BENCH_BOOTSTRAP = "AXMON_BENCH_BOOTSTRAP"
"""A broker to benchmark against instead of a local broker started for the run."""

REPO_ROOT = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A benchmark could not produce its figures (a process died, a deadline passed)."""


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number: ``metric`` of ``case`` (e.g. "worker events/s" of "lifecycle")."""

    case: str
    metric: str
    value: float
    unit: str
    digits: int = 0
    """Decimals shown."""

    def formatted(self) -> str:
        return f"{self.value:,.{self.digits}f}"


@dataclass(frozen=True, slots=True)
class Report:
    """What one benchmark hands back: its figures, how they were measured, and remarks."""

    name: str
    title: str
    method: str
    """Markdown: what was measured and how, so the figures can be read without the code."""
    figures: tuple[Figure, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BenchContext:
    """Everything a benchmark run is given."""

    bootstrap: str
    quick: bool = False
    """A small size, for a smoke run."""
    events: int | None = None
    """Overrides the benchmark's own size (events per case) when set."""
    workdir: Path = Path(tempfile.gettempdir())
    """A directory the benchmark may write to (processes' working dirs, logs)."""
    profile_dir: Path | None = None
    """Where to write profiles of the processes under test (py-spy), when set."""


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    """What ``--only`` selects."""
    title: str
    run: Callable[[BenchContext], Report]


# -- the machine -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MachineInfo:
    cpu_model: str
    cores: int
    """Logical CPUs this process may run on."""
    ram_gib: float
    kernel: str
    python: str
    kafka: str
    packages: tuple[tuple[str, str], ...]
    """(distribution, version) of the libraries the figures depend on."""
    load_average: tuple[float, float, float]
    """At the start of the run: other work on the machine skews the figures."""
    code: str = ""
    """Which code was measured: :func:`code_version`."""

    def lines(self) -> list[tuple[str, str]]:
        return [
            ("CPU", self.cpu_model),
            ("cores", str(self.cores)),
            ("RAM", f"{self.ram_gib:.1f} GiB"),
            ("kernel", self.kernel),
            ("Python", self.python),
            ("Kafka", self.kafka),
            ("packages", ", ".join(f"{name} {version}" for name, version in self.packages)),
            ("load average at start", " ".join(f"{x:.2f}" for x in self.load_average)),
            ("code", self.code or "unknown"),
        ]


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _ram_gib(meminfo: str) -> float:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info(kafka: str) -> MachineInfo:
    """Facts about this machine and the software under test (``kafka``: the broker, in words)."""
    packages = []
    for dist in ("faust-streaming", "aiokafka", "orjson", "cramjam"):
        try:
            packages.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            continue
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return MachineInfo(
        cpu_model=_cpu_model(_read("/proc/cpuinfo")),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0),
        ram_gib=_ram_gib(_read("/proc/meminfo")),
        kernel=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {platform.python_version()}",
        kafka=kafka,
        packages=tuple(packages),
        load_average=(load[0], load[1], load[2]),
        code=code_version(),
    )


SOURCE_DIRS = ("processor", "schemas", "producers", "bench")
"""The packages whose code the figures depend on."""


def source_fingerprint(root: Path = REPO_ROOT) -> str:
    """A short hash of every ``*.py`` file under :data:`SOURCE_DIRS`: equal fingerprints,
    equal code, whatever git says (the working tree may differ from its HEAD)."""
    digest = hashlib.sha256()
    for directory in SOURCE_DIRS:
        for path in sorted((root / directory).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def git_head(root: Path = REPO_ROOT) -> str | None:
    """The commit ``.git/HEAD`` names, read from the files (no git command), if any."""
    git = root / ".git"
    head = _read(str(git / "HEAD")).strip()
    if not head.startswith("ref: "):
        return head[:12] or None
    ref = head[5:]
    found = _read(str(git / ref)).strip()
    if not found:
        for line in _read(str(git / "packed-refs")).splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                found = sha
    return f"{found[:12]} ({ref.removeprefix('refs/heads/')})" if found else None


def code_version(root: Path = REPO_ROOT) -> str:
    """``HEAD <commit> (<branch>), sources <fingerprint>``."""
    head = git_head(root)
    return f"HEAD {head or 'unknown'}, sources {source_fingerprint(root)}"


# -- the broker --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BenchBroker:
    bootstrap: str
    description: str
    """For the report: which Kafka, and where it came from."""
    started_here: bool


@contextmanager
def bench_broker(environ: Mapping[str, str] | None = None, ready_timeout: float = 180.0) -> Iterator[BenchBroker]:
    """The broker to benchmark against: ``AXMON_BENCH_BOOTSTRAP`` if set, else the local jar
    broker (:mod:`processor.ops.localbroker`) started in a temporary data directory for this run
    and stopped (its data deleted) when the block ends."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_BENCH_BOOTSTRAP)
    if explicit:
        yield BenchBroker(explicit, f"external broker at {explicit} ({ENV_BENCH_BOOTSTRAP})", False)
        return
    with tempfile.TemporaryDirectory(prefix="axmon-bench-kafka-") as tmp:
        data_dir = Path(tmp)
        status = localbroker.start(data_dir, ready_timeout=ready_timeout, ephemeral=True)
        try:
            yield BenchBroker(
                status.bootstrap,
                f"Apache Kafka {localbroker.KAFKA_VERSION} (local single-node KRaft broker, "
                f"JVM {' '.join(localbroker.JVM_OPTS[:2])}, started for this run)",
                True,
            )
        finally:
            localbroker.stop(data_dir)


def unique_prefix(label: str) -> str:
    """A topic prefix no earlier run used: ``bench-<label>-<10 hex>.``."""
    return f"bench-{label}-{uuid.uuid4().hex[:10]}."


async def create_contract_topics(bootstrap: str, prefix: str, partitions: int, timeout_s: float = 30.0) -> Topics:
    """The contract's topics under ``prefix``, created now (``partitions`` each), once every
    partition has a leader (a producer that comes sooner meets ``NotLeaderForPartition``)."""
    topics = Topics(prefix)
    specs = contract_topics(topics, partitions)
    await ensure_topics(bootstrap, specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        deadline = now() + timeout_s
        while now() < deadline:
            described = await admin.describe_topics([s.name for s in specs])
            if all(t.get("error_code", 0) == 0 and len(t.get("partitions", ())) == partitions
                   and all(p.get("leader", -1) >= 0 and p.get("error_code", 0) == 0 for p in t["partitions"])
                   for t in described):
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    await asyncio.sleep(0.5)  # metadata can reach the partition leaders a moment later
    return topics


async def delete_topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (the contract's and the ones a
    worker made for itself, such as Faust's changelogs); returns their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


# -- time and processes ------------------------------------------------------------------------


def now() -> float:
    """The clock every benchmark measures with (monotonic, sub-microsecond)."""
    return time.perf_counter()


def rate(count: int, seconds: float) -> float:
    """``count / seconds``, 0 for an empty or instantaneous run."""
    return count / seconds if seconds > 0 and count > 0 else 0.0


def _status_kib(pid: int, field: str) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set size so far (``VmHWM``), 0 if unknown."""
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far, 0 if unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a process under test: this one's, unbuffered, with the repository
    on ``PYTHONPATH`` (so it runs the code checked out here from any working directory)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env
