"""The embedded default broker: one Apache Kafka node (KRaft) run from Maven Central jars.

Jars: ``<cache home>/kafka-<version>/libs``, once per machine (``.complete`` marks them whole).
A data directory holds ``broker.json`` (ports and cluster id, fixed at the first start so the data
survives restarts), ``server.properties``, ``log4j2.properties``, ``broker.pid``, ``broker.log``
(the run before: ``broker.log.1``) and Kafka's ``data/``. No state is kept between calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from processor.errors import BrokerError, MissingToolError
from processor.settings import default_cache_home

KAFKA_VERSION = "4.1.2"
LOG4J_VERSION = "2.25.3"
MIN_JAVA = 17
HOST = "127.0.0.1"
DEFAULT_PORTS = (9092, 9093)
MESSAGE_MAX_BYTES = 1_048_588
"""The broker's ``message.max.bytes``: the largest record batch it accepts (Kafka's default,
written out so that README and ``axmon produce`` can state it)."""
JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true")
STATE_FILE, PID_FILE, LOG_FILE, _MARKER = "broker.json", "broker.pid", "broker.log", ".complete"
_ARTIFACTS = (("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
              ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
              ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
              ("org.apache.logging.log4j", "log4j-api", LOG4J_VERSION))
POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>axmon.local</groupId><artifactId>jars</artifactId><version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging><dependencies>
{"".join(f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
         f"</dependency>{chr(10)}" for g, a, v in _ARTIFACTS)}  </dependencies></project>
"""
# To stdout (= broker.log). Without "shutdownHook = disable" Kafka's shutdown goes unlogged.
LOG4J2_PROPERTIES = """\
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger = INFO, STDOUT
"""

log = logging.getLogger(__name__)
Progress = Callable[[str], None] | None


@dataclass(frozen=True, slots=True)
class BrokerState:
    """What the first start in a data directory fixed; every later start reuses it."""

    cluster_id: str
    """22 characters: 16 random bytes, URL-safe base64 without padding."""
    port: int
    """The client (PLAINTEXT) listener on 127.0.0.1."""
    controller_port: int
    kafka_version: str = KAFKA_VERSION

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    data_dir: Path
    bootstrap: str
    """``127.0.0.1:<port>``; empty when no broker was ever started in ``data_dir``."""
    pid: int | None
    """The broker's process id while it runs, else ``None``."""
    running: bool
    log_file: Path
    cluster_id: str | None = None


def parse_java_version(output: str) -> int | None:
    """The major version in ``java -version`` output: ``"1.8.0_292"`` -> 8, ``"17.0.15"`` -> 17."""
    if (found := re.search(r'version "(\d+)(?:\.(\d+))?[^"]*"', output)) is None:
        return None
    return int(found.group(2) or 0) if found.group(1) == "1" else int(found.group(1))


def escape_property(value: str) -> str:
    """A value as ``java.util.Properties.load`` reads it back (ISO-8859-1 with escapes)."""
    out = value.replace("\\", "\\\\")
    out = "\\" + out if out.startswith(" ") else out
    def char(c: str) -> str:  # beyond U+FFFF a surrogate pair, as Java strings are UTF-16
        return c if " " <= c <= "~" else re.sub("(....)", r"\\u\1", c.encode("utf-16-be").hex())
    return "".join(map(char, out))


def server_properties(state: BrokerState, kafka_data: Path) -> str:
    """The single-node KRaft configuration: broker and controller in one process."""
    port, controller = state.port, state.controller_port
    return f"""\
# written by axmon for Kafka {state.kafka_version}, rewritten at every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{controller}
listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller}
advertised.listeners=PLAINTEXT://{HOST}:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={escape_property(str(kafka_data))}
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes={MESSAGE_MAX_BYTES}
"""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def jars_dir(cache_dir: Path | None = None) -> Path:
    """Where the jars are (or will be): ``<cache_dir or default_cache_home()>/kafka-4.1.2/libs``."""
    return (cache_dir or default_cache_home()) / f"kafka-{KAFKA_VERSION}" / "libs"


def check_tools(cache_dir: Path | None = None) -> None:
    """Raise :class:`MissingToolError` naming what is missing: Java 17+, Maven (if no jars yet)."""
    java, found = shutil.which("java"), None
    if java is not None:
        with suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
            found = parse_java_version(done.stderr + done.stdout)
    missing: dict[str, str] = {}  # Debian package: what is missing
    if found is None or found < MIN_JAVA:
        seen = ("`java` is not on PATH" if java is None else f"{java} could not be run"
                if found is None else f"{java} is Java {found}")
        missing["openjdk-17-jre-headless"] = f"Java {MIN_JAVA} or newer ({seen})"
    if not (jars_dir(cache_dir) / _MARKER).is_file() and shutil.which("mvn") is None:
        missing["maven"] = "Maven, to fetch the Kafka jars once (`mvn` is not on PATH)"
    if missing:
        raise MissingToolError(
            "The local Kafka broker needs " + " and ".join(missing.values()) + ".\n"
            f"Install with e.g. `sudo apt-get install {' '.join(missing)}` "
            "(macOS: `brew install openjdk@17 maven`).\n"
            "Or run Kafka in Docker instead: `docker compose up -d kafka` (docker-compose.yml), "
            f"then pass `--bootstrap {HOST}:9092`.")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def ensure_jars(cache_dir: Path | None = None, *, on_progress: Progress = None) -> Path:
    """The broker's jar directory, downloaded with Maven unless already complete."""
    libs = jars_dir(cache_dir)
    if (libs / _MARKER).is_file():
        return libs
    with _file_lock(libs.parent / ".lock"):
        if (libs / _MARKER).is_file():
            return libs  # another process finished while this one waited for the lock
        check_tools(cache_dir)  # names Maven if it is missing
        (on_progress or log.info)(f"downloading Kafka {KAFKA_VERSION} jars from Maven Central "
                                  "(once per machine)...")
        (pom := libs.parent / "pom.xml").write_text(POM)
        tmp = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
        try:
            cmd = [shutil.which("mvn") or "mvn", "-B", "-q", "-f", str(pom),
                   "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired as exc:
                raise BrokerError("Maven did not download the Kafka jars within 30 min") from exc
            jars = sorted(p.name for p in tmp.glob("*.jar"))
            if done.returncode != 0 or f"kafka_2.13-{KAFKA_VERSION}.jar" not in jars:
                raise BrokerError(
                    f"Maven could not download the Kafka {KAFKA_VERSION} jars (exit code "
                    f"{done.returncode}, pom {pom}):\n{_tail(done.stdout + done.stderr, 30)}")
            (tmp / _MARKER).write_text(json.dumps({"kafka": KAFKA_VERSION, "jars": jars}) + "\n")
            shutil.rmtree(libs, ignore_errors=True)  # an incomplete copy, e.g. made by hand
            tmp.rename(libs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return libs


def port_free(port: int) -> bool:
    """Whether a listener could bind ``127.0.0.1:port`` (with SO_REUSEADDR, as Java does)."""
    with socket.socket() as sock, suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        return True
    return False


def _ephemeral_ports() -> tuple[int, int]:
    with socket.socket() as one, socket.socket() as two:  # bound at once, so they differ
        one.bind((HOST, 0))
        two.bind((HOST, 0))
        return one.getsockname()[1], two.getsockname()[1]


def choose_ports(port: int | None = None, *,
                 default: tuple[int, int] = DEFAULT_PORTS) -> tuple[int, int]:
    """(client port, controller port): ``port`` (it must be free) and the next one, else
    ``default``; when one of a pair is taken, free ephemeral ports stand in."""
    if port is not None and not port_free(port):
        raise BrokerError(f"port {port} on {HOST} is already in use")
    client, controller = default if port is None else (port, port + 1)
    if port is None and not (port_free(client) and port_free(controller)):
        client, controller = _ephemeral_ports()
    elif controller > 65535 or not port_free(controller):
        controller = next(p for p in _ephemeral_ports() if p != client)
    return client, controller


def _gone(pid: int) -> bool:
    """No such process, or a zombie (reaped here if it is a child of this process)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    if state == "Z":
        with suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return state == "Z"


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """Alive and running ``kafka.Kafka`` on this data dir: not a pid reused by another program."""
    props = str(data_dir.resolve() / "server.properties").encode()
    with suppress(OSError):
        argv = set(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        return not _gone(pid) and {b"kafka.Kafka", props} <= argv
    return False


def load_state(data_dir: Path) -> BrokerState | None:
    try:
        return BrokerState(**json.loads((data_dir / STATE_FILE).read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise BrokerError(f"{data_dir / STATE_FILE} is unreadable ({exc}); "
                          "remove the data directory to start afresh") from exc


def local_bootstrap(data_dir: Path) -> str | None:
    """The address recorded in ``data_dir`` (``None`` if no broker was ever started there)."""
    return None if (state := load_state(data_dir)) is None else state.bootstrap


def status(data_dir: Path) -> BrokerStatus:
    data_dir, pid = data_dir.resolve(), None
    state = load_state(data_dir)
    with suppress(OSError, ValueError):
        pid = int((data_dir / PID_FILE).read_text().strip())
    running = pid is not None and _is_our_broker(pid, data_dir)
    return BrokerStatus(data_dir=data_dir, bootstrap=state.bootstrap if state else "",
                        pid=pid if running else None, running=running, log_file=data_dir / LOG_FILE,
                        cluster_id=state.cluster_id if state else None)


def _running_pid(data_dir: Path) -> int | None:
    """The pid of the broker running on ``data_dir``, read without its state file."""
    with suppress(OSError, ValueError):
        pid = int((data_dir / PID_FILE).read_text().strip())
        return pid if _is_our_broker(pid, data_dir.resolve()) else None
    return None


def stop(data_dir: Path, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout`` s; whether a broker was running."""
    pid = _running_pid(data_dir)
    if pid is not None:
        log.info("stopping the Kafka broker (pid %d)", pid)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while not (gone := _gone(pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            if gone:
                break
            log.warning("the Kafka broker (pid %d) outlived %s", pid, sig.name)
        else:
            raise BrokerError(f"the Kafka broker (pid {pid}) did not stop, even on SIGKILL")
    (data_dir / PID_FILE).unlink(missing_ok=True)
    return pid is not None


BROKER_FILES = (STATE_FILE, PID_FILE, LOG_FILE, f"{LOG_FILE}.1", "server.properties", "log4j2.properties", ".lock")
"""What a start writes into a data directory, besides Kafka's ``data/``."""


def reset(data_dir: Path, timeout: float = 15.0) -> bool:
    """Stop the broker of ``data_dir`` and remove what axmon put there (Kafka's ``data/`` and
    :data:`BROKER_FILES`; the directory too once empty), so that the next start provisions a
    new, empty broker. Anything else in the directory is left alone. Whether there was a
    broker to remove."""
    data_dir = data_dir.resolve()
    stop(data_dir, timeout)  # raises, removing nothing, if the broker outlives SIGKILL
    kafka_data = data_dir / "data"
    found = kafka_data.is_dir() or (data_dir / STATE_FILE).exists()
    shutil.rmtree(kafka_data, ignore_errors=True)
    for name in BROKER_FILES:
        (data_dir / name).unlink(missing_ok=True)
    with suppress(OSError):
        data_dir.rmdir()  # only if nothing else is in it
    if kafka_data.exists():
        raise BrokerError(f"could not remove {kafka_data}")
    return found


def _java_cmd(java: str, libs: Path, data_dir: Path, main: str, *args: str) -> list[str]:
    return [java, *JVM_OPTS, f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", main, *args]


def new_cluster_id() -> str:
    """16 random bytes as 22 URL-safe base64 characters, never starting with '-': the storage
    tool would read such an id as an option (Kafka's own Uuid.randomUuid avoids it too)."""
    while True:
        cluster_id = secrets.token_urlsafe(16)
        if not cluster_id.startswith("-"):
            return cluster_id


def provision(data_dir: Path, port: int | None = None, *, ephemeral: bool = False) -> BrokerState:
    """Fix a new data directory's ports and cluster id; check an older one's ports are usable.
    ``ephemeral``: any free ports, never the default pair (for brokers of tests and benchmarks,
    which may run beside the user's and each other)."""
    state = load_state(data_dir)
    if state is None:
        ports = _ephemeral_ports() if ephemeral and port is None else choose_ports(port)
        state = BrokerState(new_cluster_id(), *ports)
        (data_dir / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")
        return state
    if port is not None and port != state.port:
        raise BrokerError(f"the broker in {data_dir} was set up on port {state.port}, not {port}; "
                          "start it without a port, or use another data directory")
    for taken in (p for p in (state.port, state.controller_port) if not port_free(p)):
        raise BrokerError(f"port {taken} on {HOST}, set up for the broker in {data_dir}, is in use "
                          "by another program (a Kafka?): stop it or use another data directory")
    return state


async def _metadata_ok(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        return bool((await admin.describe_cluster()).get("brokers"))
    except (KafkaError, OSError):  # not ready yet (OSError includes TimeoutError)
        return False
    finally:
        await admin.close()


def _broker_answers(bootstrap: str, port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except OSError:
        return False
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # works even inside an event loop
        return pool.submit(asyncio.run, _metadata_ok(bootstrap)).result()


BIND_ATTEMPTS = 3
"""Starts of a freshly provisioned broker whose port was taken before it bound it."""


class _PortTaken(BrokerError):
    """The broker exited because one of its ports was in use."""


def _launch(data_dir: Path, port: int | None, ephemeral: bool, java: str, libs: Path,
            progress: Callable[[str], None]) -> BrokerStatus | tuple[BrokerState, int]:
    """Provision (the first time), format and launch the broker: its state and pid, or the
    status of the broker another start launched meanwhile."""
    log_file = data_dir / LOG_FILE
    with _file_lock(data_dir / ".lock"):  # two starts at once: the second sees the first's
        if (current := status(data_dir)).running:
            return current
        state = provision(data_dir, port, ephemeral=ephemeral)
        kafka_data, props = data_dir / "data", data_dir / "server.properties"
        props.write_text(server_properties(state, kafka_data))
        (data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        if not (kafka_data / "meta.properties").is_file():
            progress("formatting storage")
            done = subprocess.run(
                _java_cmd(java, libs, data_dir, "kafka.tools.StorageTool", "format", "-t",
                          state.cluster_id, "-c", str(props), "--ignore-formatted"),
                capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise BrokerError(f"formatting {kafka_data} failed (exit code {done.returncode}):\n"
                                  + _tail(done.stdout + done.stderr))
        if log_file.exists():
            log_file.replace(data_dir / f"{LOG_FILE}.1")
        cmd = _java_cmd(java, libs, data_dir, "kafka.Kafka", str(props))
        log.info("launching %s", " ".join(cmd))
        with open(log_file, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=data_dir, start_new_session=True)
        # The broker outlives this Popen (_gone reaps it): no ResourceWarning when it is GC'd.
        pid, proc.returncode = proc.pid, 0
        (data_dir / PID_FILE).write_text(f"{pid}\n")
    return state, pid


def _wait_ready(data_dir: Path, state: BrokerState, pid: int, ready_timeout: float,
                progress: Callable[[str], None]) -> None:
    log_file = data_dir / LOG_FILE
    progress(f"waiting for the broker (up to {ready_timeout:.0f} s)")
    began = time.monotonic()
    while not _broker_answers(state.bootstrap, state.port):
        died = _gone(pid)  # our unreaped child: its pid cannot have been reused
        if died or time.monotonic() - began > ready_timeout:
            stop(data_dir)
            problem = "exited" if died else f"was not ready within {ready_timeout:.0f} s (stopped)"
            text = log_file.read_text(errors="replace")
            message = f"the Kafka broker {problem}; the end of {log_file}:\n" + _tail(text)
            raise (_PortTaken if died and "Address already in use" in text else BrokerError)(message)
        time.sleep(0.5)
    log.info("Kafka broker answered after %.1f s", time.monotonic() - began)


def _repick_ports(data_dir: Path, state: BrokerState, port: int | None) -> None:
    """Other free ports for a broker provisioned by this start (the same cluster id, which its
    formatted storage holds)."""
    client, controller = _ephemeral_ports()
    if port is not None:
        client, controller = port, next(p for p in _ephemeral_ports() if p != port)
    fresh = BrokerState(state.cluster_id, client, controller)
    (data_dir / STATE_FILE).write_text(json.dumps(asdict(fresh), indent=2) + "\n")


def start(data_dir: Path, *, port: int | None = None, ready_timeout: float = 90.0,
          on_progress: Progress = None, cache_dir: Path | None = None, ephemeral: bool = False) -> BrokerStatus:
    """Start the broker of ``data_dir`` (provisioning it the first time) and wait until it
    answers a metadata request; if it already runs, just return its status.

    Ports are chosen free, but another program may bind one before the broker does (a client
    socket takes its local port from the same range): a broker provisioned by this call that
    dies on a taken port is given other ports (the client port kept when ``port`` names it)
    and started again, at most :data:`BIND_ATTEMPTS` times."""
    data_dir = data_dir.resolve()
    if (current := status(data_dir)).running:
        return current
    check_tools(cache_dir)
    progress = on_progress or log.info
    libs = ensure_jars(cache_dir, on_progress=progress)
    java = shutil.which("java") or "java"
    fresh = load_state(data_dir) is None
    for attempt in range(1, BIND_ATTEMPTS + 1):
        launched = _launch(data_dir, port, ephemeral, java, libs, progress)
        if isinstance(launched, BrokerStatus):
            return launched
        state, pid = launched
        try:
            _wait_ready(data_dir, state, pid, ready_timeout, progress)
            break
        except _PortTaken as taken:
            if not fresh or attempt == BIND_ATTEMPTS:
                raise BrokerError(str(taken)) from None
            log.warning("the broker's port was taken before it bound it; trying other ports")
            _repick_ports(data_dir, state, port)
    log.info("Kafka broker ready at %s", state.bootstrap)
    return status(data_dir)
