"""Who may talk to the server: loopback detection, tokens, allowed Host names.

Defaults follow Jupyter: ``medisam serve`` generates a random token when none is given
and prints it once; ``$MEDISAM_TOKEN`` passes one without showing it in ``ps``. The Host
allowlist and the Origin check (in :mod:`medisam.serve.middleware`) stop DNS rebinding and
cross-site form posts from a browser.
"""

from __future__ import annotations

import ipaddress
import secrets

#: Names that always reach a loopback server.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Bind addresses meaning "every interface".
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
#: The environment variable that carries the token (preferred over --token, which shows in ps).
TOKEN_ENV = "MEDISAM_TOKEN"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def generate_token() -> str:
    """A fresh random token (192 bits, URL-safe)."""
    return secrets.token_urlsafe(24)


def allowed_host_names(bind_host: str, extra: tuple[str, ...] = ()) -> frozenset[str] | None:
    """Host header names the server answers (lower case, no port); ``None`` means any.

    Loopback names, the bind address and ``extra`` are allowed; a wildcard bind
    (``0.0.0.0``/``::``) allows any name unless ``extra`` lists some (the token guards it).
    """
    if bind_host in WILDCARD_HOSTS and not extra:
        return None
    names = {*LOOPBACK_NAMES, *extra}
    if bind_host not in WILDCARD_HOSTS:
        names.add(bind_host)
    return frozenset(n.lower().strip("[]") for n in names)


def split_host(value: str) -> tuple[str, str]:
    """``"Example.org:8000"`` -> ``("example.org", "8000")``; ``"[::1]:80"`` -> ``("::1", "80")``."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.lstrip(":")
    if value.count(":") > 1:  # a bare IPv6 address
        return value, ""
    name, _, port = value.partition(":")
    return name, port
