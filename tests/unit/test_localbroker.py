"""The local broker's pure parts and process bookkeeping: no Java, no Maven, no broker."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from processor.errors import AxmonError, BrokerError, MissingToolError
from processor.ops import localbroker
from processor.ops.localbroker import BrokerState


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _free_pair() -> tuple[int, int]:
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        return one.getsockname()[1], two.getsockname()[1]


def _read_properties(text: str) -> dict[str, str]:
    """Enough of java.util.Properties for our files: key=value lines and backslash escapes."""
    def unescape(found: re.Match[str]) -> str:
        code = found.group(1)
        return chr(int(code[1:], 16)) if code.startswith("u") else code

    props = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            utf16 = re.sub(r"\\(u[0-9a-f]{4}|.)", unescape, value)  # may hold surrogate pairs
            props[key] = utf16.encode("utf-16", "surrogatepass").decode("utf-16")
    return props


def _script(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty directory: no java, no mvn (scripts put there become the tools)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


# -- generated files ---------------------------------------------------------------------------

def test_server_properties_single_node_kraft() -> None:
    state = BrokerState("AAAAAAAAAAAAAAAAAAAAAA", port=19092, controller_port=19093)
    props = _read_properties(localbroker.server_properties(state, Path("/var/k data/data")))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == "/var/k data/data"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.min.isr",
                "transaction.state.log.replication.factor",
                "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1"
    assert "localhost" not in localbroker.server_properties(state, Path("/d"))


@pytest.mark.parametrize(("raw", "escaped"), [
    ("/plain/path", "/plain/path"),
    ("C:\\dir", "C:\\\\dir"),
    (" lead", "\\ lead"),
    ("/caf\u00e9", "/caf\\u00e9"),
    ("/\U0001f600", "/\\ud83d\\ude00"),
])
def test_escape_property(raw: str, escaped: str) -> None:
    assert localbroker.escape_property(raw) == escaped
    assert _read_properties(f"k={escaped}")["k"] == raw


def test_log4j2_properties_keep_shutdown_logging() -> None:
    lines = set(localbroker.LOG4J2_PROPERTIES.splitlines())
    assert "shutdownHook = disable" in lines
    assert "rootLogger = INFO, STDOUT" in lines


def test_pom_lists_broker_and_log4j_binding() -> None:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.fromstring(localbroker.POM)
    deps = {(d.findtext("m:artifactId", namespaces=ns), d.findtext("m:version", namespaces=ns))
            for d in root.iterfind("m:dependencies/m:dependency", ns)}
    assert deps == {("kafka_2.13", "4.1.2"), ("log4j-slf4j-impl", "2.25.3"),
                    ("log4j-core", "2.25.3"), ("log4j-api", "2.25.3")}


# -- state file and ports ----------------------------------------------------------------------

def test_provision_writes_state_once_and_reuses_it(tmp_path: Path) -> None:
    assert localbroker.local_bootstrap(tmp_path) is None
    first = localbroker.provision(tmp_path)
    assert len(first.cluster_id) == 22
    assert len(base64.urlsafe_b64decode(first.cluster_id + "==")) == 16
    assert first.port != first.controller_port
    saved = json.loads((tmp_path / localbroker.STATE_FILE).read_text())
    assert saved == {"cluster_id": first.cluster_id, "port": first.port,
                     "controller_port": first.controller_port, "kafka_version": "4.1.2"}
    assert localbroker.load_state(tmp_path) == first
    assert localbroker.provision(tmp_path) == first
    assert localbroker.local_bootstrap(tmp_path) == f"127.0.0.1:{first.port}"


def test_provision_refuses_another_port(tmp_path: Path) -> None:
    state = localbroker.provision(tmp_path)
    with pytest.raises(BrokerError, match=f"set up on port {state.port}"):
        localbroker.provision(tmp_path, port=state.port + 7)


def test_provision_refuses_a_saved_port_now_taken(tmp_path: Path) -> None:
    with _listening() as squatter:
        taken = squatter.getsockname()[1]
        (tmp_path / localbroker.STATE_FILE).write_text(json.dumps(
            {"cluster_id": "AAAAAAAAAAAAAAAAAAAAAA", "port": taken, "controller_port": 1}))
        with pytest.raises(BrokerError, match=f"port {taken} .* in use"):
            localbroker.provision(tmp_path)


def test_unreadable_state_file_is_a_broker_error(tmp_path: Path) -> None:
    (tmp_path / localbroker.STATE_FILE).write_text("{not json")
    with pytest.raises(BrokerError, match="unreadable"):
        localbroker.status(tmp_path)


def test_choose_ports_prefers_the_default_pair_when_free() -> None:
    pair = _free_pair()
    assert localbroker.choose_ports(default=pair) == pair


def test_choose_ports_falls_back_to_free_ports() -> None:
    with _listening() as squatter:
        taken = squatter.getsockname()[1]
        client, controller = localbroker.choose_ports(default=(taken, _free_pair()[0]))
        assert taken not in (client, controller)
        assert client != controller
        assert localbroker.port_free(client) and localbroker.port_free(controller)


def test_choose_ports_explicit_port() -> None:
    with _listening() as squatter:
        taken = squatter.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {taken}"):
            localbroker.choose_ports(taken)
        if localbroker.port_free(taken - 1):  # the port after it is taken: any other one
            client, controller = localbroker.choose_ports(taken - 1)
            assert client == taken - 1 and controller not in (taken, taken - 1)
    port = _free_pair()[0]
    assert localbroker.choose_ports(port)[0] == port


# -- tools -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("output", "major"), [
    ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
    ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_292"\nJava(TM) SE Runtime Environment', 8),
    ('openjdk version "22-ea" 2024-03-19', 22),
    ('Picked up JAVA_TOOL_OPTIONS: -Xss1m\nopenjdk version "11.0.2" 2019-01-15', 11),
    ("bash: java: command not found", None),
])
def test_parse_java_version(output: str, major: int | None) -> None:
    assert localbroker.parse_java_version(output) == major


def test_check_tools_without_java_or_maven(bare_path: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingToolError) as caught:
        localbroker.check_tools(tmp_path / "cache")
    message = str(caught.value)
    assert isinstance(caught.value, AxmonError)
    assert "Java 17 or newer (`java` is not on PATH)" in message
    assert "Maven" in message and "`mvn` is not on PATH" in message
    assert "apt-get install openjdk-17-jre-headless maven" in message
    assert "docker compose up -d kafka" in message
    assert "--bootstrap 127.0.0.1:9092" in message


def test_check_tools_old_java_with_cached_jars(bare_path: Path, tmp_path: Path) -> None:
    _script(bare_path, "java", "echo 'java version \"1.8.0_292\"' >&2\n")
    libs = localbroker.jars_dir(tmp_path)
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("{}")
    with pytest.raises(MissingToolError) as caught:
        localbroker.check_tools(tmp_path)
    message = str(caught.value)
    assert "is Java 8" in message and "Maven" not in message
    assert "apt-get install openjdk-17-jre-headless`" in message


def test_check_tools_passes_with_java_17_and_cached_jars(bare_path: Path, tmp_path: Path) -> None:
    _script(bare_path, "java", "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2\n")
    libs = localbroker.jars_dir(tmp_path)
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("{}")
    localbroker.check_tools(tmp_path)
    assert localbroker.ensure_jars(tmp_path) == libs  # cached: no Maven needed


def test_start_without_java_fails_before_touching_the_data_dir(bare_path: Path,
                                                               tmp_path: Path) -> None:
    with pytest.raises(MissingToolError):
        localbroker.start(tmp_path / "kafka", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "kafka").exists()


# -- jar download with a stand-in Maven --------------------------------------------------------

_FAKE_JAVA = "echo 'openjdk version \"17.0.15\"' >&2\n"
_FAKE_MVN_OK = """\
for arg in "$@"; do case "$arg" in -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";; esac; done
: > "$out/kafka_2.13-4.1.2.jar"
: > "$out/kafka-clients-4.1.2.jar"
"""


def test_ensure_jars_downloads_once_into_place(bare_path: Path, tmp_path: Path) -> None:
    _script(bare_path, "java", _FAKE_JAVA)
    _script(bare_path, "mvn", _FAKE_MVN_OK + f'echo run >> "{tmp_path}/mvn-runs"\n')
    seen: list[str] = []
    libs = localbroker.ensure_jars(tmp_path, on_progress=seen.append)
    assert libs == tmp_path / "kafka-4.1.2" / "libs"
    assert sorted(p.name for p in libs.iterdir()) == [
        ".complete", "kafka-clients-4.1.2.jar", "kafka_2.13-4.1.2.jar"]
    assert seen == ["downloading Kafka 4.1.2 jars from Maven Central (once per machine)..."]
    assert localbroker.ensure_jars(tmp_path) == libs
    assert (tmp_path / "mvn-runs").read_text() == "run\n"
    assert sorted(p.name for p in libs.parent.iterdir()) == [".lock", "libs", "pom.xml"]


def test_ensure_jars_redoes_an_incomplete_download(bare_path: Path, tmp_path: Path) -> None:
    _script(bare_path, "java", _FAKE_JAVA)
    _script(bare_path, "mvn", _FAKE_MVN_OK)
    libs = localbroker.jars_dir(tmp_path)
    libs.mkdir(parents=True)
    (libs / "half.jar").write_text("")
    localbroker.ensure_jars(tmp_path)
    assert not (libs / "half.jar").exists() and (libs / ".complete").is_file()


def test_ensure_jars_failure_shows_mavens_output(bare_path: Path, tmp_path: Path) -> None:
    _script(bare_path, "java", _FAKE_JAVA)
    _script(bare_path, "mvn", "echo '[ERROR] Could not resolve dependencies' ; exit 1\n")
    with pytest.raises(BrokerError, match=r"(?s)exit code 1.*Could not resolve dependencies"):
        localbroker.ensure_jars(tmp_path)
    root = localbroker.jars_dir(tmp_path).parent
    assert sorted(p.name for p in root.iterdir()) == [".lock", "pom.xml"]  # no half libs dir


def test_ensure_jars_without_maven(bare_path: Path, tmp_path: Path) -> None:
    _script(bare_path, "java", _FAKE_JAVA)
    with pytest.raises(MissingToolError, match="apt-get install maven"):
        localbroker.ensure_jars(tmp_path)


# -- status and stop ---------------------------------------------------------------------------

def test_status_of_an_empty_dir(tmp_path: Path) -> None:
    current = localbroker.status(tmp_path)
    assert current == localbroker.BrokerStatus(
        data_dir=tmp_path, bootstrap="", pid=None, running=False,
        log_file=tmp_path / "broker.log", cluster_id=None)
    assert localbroker.stop(tmp_path) is False


@contextmanager
def _stand_in(data_dir: Path, *, ignore_sigterm: bool) -> Iterator[subprocess.Popen[str]]:
    """A Python process whose command line looks like the broker of ``data_dir``."""
    code = ("import signal, sys, time\n"
            "if sys.argv[1] == 'True': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(120)")
    props = str(data_dir.resolve() / "server.properties")
    with subprocess.Popen([sys.executable, "-c", code, str(ignore_sigterm), "kafka.Kafka", props],
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        (data_dir / localbroker.PID_FILE).write_text(f"{proc.pid}\n")
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("ignore_sigterm", [False, True])
def test_stop_terminates_then_kills(tmp_path: Path, ignore_sigterm: bool, caplog: pytest.LogCaptureFixture) -> None:
    with _stand_in(tmp_path, ignore_sigterm=ignore_sigterm) as proc:
        current = localbroker.status(tmp_path)
        assert current.running and current.pid == proc.pid
        with caplog.at_level(logging.WARNING, logger=localbroker.__name__):
            # the SIGTERM timeout is short only where it must run out
            assert localbroker.stop(tmp_path, timeout=1.0 if ignore_sigterm else 60.0) is True
        assert not Path(f"/proc/{proc.pid}").exists()  # gone and reaped
        # SIGKILL came only for the process that outlived SIGTERM
        assert ("outlived SIGTERM" in caplog.text) is ignore_sigterm
        assert not (tmp_path / localbroker.PID_FILE).exists()
        assert localbroker.status(tmp_path).running is False
        assert localbroker.stop(tmp_path) is False


def test_a_reused_pid_is_not_the_broker(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        (tmp_path / localbroker.PID_FILE).write_text(f"{other.pid}\n")
        (tmp_path / localbroker.STATE_FILE).write_text(json.dumps(
            {"cluster_id": "AAAAAAAAAAAAAAAAAAAAAA", "port": 1, "controller_port": 2}))
        current = localbroker.status(tmp_path)
        assert (current.running, current.pid, current.bootstrap) == (False, None, "127.0.0.1:1")
        assert localbroker.stop(tmp_path) is False
        assert other.poll() is None  # not killed
        other.kill()


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["-abcdefghijklmnopqrstu", "Aabcdefghijklmnopqrstu"])
    monkeypatch.setattr(localbroker.secrets, "token_urlsafe", lambda n: next(ids))
    assert localbroker.new_cluster_id() == "Aabcdefghijklmnopqrstu"


def test_ephemeral_provision_never_takes_the_default_ports(tmp_path: Path) -> None:
    """Test and benchmark brokers run beside the user's (and each other): any free pair, never
    9092/9093, so two starting at once do not race for the same ports."""
    state = localbroker.provision(tmp_path, ephemeral=True)
    assert {state.port, state.controller_port}.isdisjoint(localbroker.DEFAULT_PORTS)
    assert state.port != state.controller_port
