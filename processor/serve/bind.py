"""Where ``axmon serve`` may listen: loopback unless API keys guard it."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from processor.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8321


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0])).is_loopback for info in infos)


def check_bind(host: str, keys: Path | None) -> None:
    if keys is None and not is_loopback(host):
        raise ConfigError(f"refusing to serve on {host} without --keys: anyone who can reach it would read every tenant")
