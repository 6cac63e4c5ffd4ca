"""Where a client finds its server and its secret: the rules every LuxDB tool follows (README,
"Connecting: address and secret").

Address: an explicit one wins (the `host` / `port` arguments, or `address="host:port"`); a part
not given comes from LUXDB_ADDRESS ("host:port", IPv6 as "[::1]:8484"), else from LUXDB_HOST
and LUXDB_PORT, else the default 127.0.0.1:8484. LUXDB_ADDRESS together with LUXDB_HOST or
LUXDB_PORT is an error.

Secret: the `secret` argument, else `secret_file` (the file's contents without surrounding
white space, as the server reads --secret-file), else LUXDB_SECRET, else LUXDB_SECRET_FILE.
LUXDB_SECRET together with LUXDB_SECRET_FILE is an error; no secret at all is one too, unless
`insecure` (a server run with --insecure).

A variable set to the empty string counts as unset. Every bad value raises ValueError naming
where it came from and what it was.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Mapping, NamedTuple, Optional, Tuple, Union

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8484
# A secret is a short string; a larger "secret file" is some other file given by mistake.
MAX_SECRET_FILE_BYTES = 64 * 1024

Secret = Union[str, bytes]


class Address(NamedTuple):
    """A server address: `host` without brackets (an IPv6 literal as "::1"), `port` in
    1..65535. str(address) is "host:port" as gRPC takes it."""
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _variable(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name)
    return value if value else None


def parse_port(value: Union[int, str], source: str) -> int:
    """`value` (an int, or a str of digits) as a port in 1..65535; ValueError naming `source`
    (e.g. "LUXDB_PORT" or "port") and the value otherwise."""
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isdigit():
        number = int(value)
    if number is None or not 1 <= number <= 65535:
        raise ValueError(f"{source}={value!r} is not a port: give a number from 1 to 65535")
    return number


def parse_host(value: str, source: str) -> str:
    """`value` (a host name, an IPv4 address or an IPv6 one, bracketed or not) without
    brackets; ValueError naming `source` and the value if it is empty or holds a port."""
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if not host or "[" in host or "]" in host or "/" in host or any(c.isspace() for c in host):
        raise ValueError(f"{source}={value!r} is not a host name or address")
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"{source}={value!r} is not a host name or address (for \"host:port\" use "
                f"address= or LUXDB_ADDRESS)") from None
    return host


def parse_address(text: str, source: str) -> Address:
    """"host:port" (IPv6 as "[::1]:8484") as an Address; ValueError naming `source` (e.g.
    "LUXDB_ADDRESS") and the text otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{source}={text!r} is not an address: give \"host:port\"")
    host, colon, port = text.rpartition(":")
    unbracketed_ipv6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not colon or not port or "]" in port or unbracketed_ipv6:
        raise ValueError(f"{source}={text!r} has no port: give \"host:port\" (IPv6 as "
                         f"\"[::1]:{DEFAULT_PORT}\")")
    try:
        return Address(parse_host(host, source), parse_port(port, source))
    except ValueError:
        raise ValueError(f"{source}={text!r} is not \"host:port\" with a port from 1 to 65535 "
                         f"(IPv6 as \"[::1]:{DEFAULT_PORT}\")") from None


def resolve_address(host: Optional[str] = None, port: Optional[Union[int, str]] = None, *,
                    address: Optional[str] = None,
                    environ: Mapping[str, str] = os.environ) -> Address:
    """The server's Address by the rules above: `host` and `port`, or `address`, win; the
    environment fills in what they leave out. ValueError for a bad or contradictory value."""
    if address is not None:
        if host is not None or port is not None:
            raise ValueError(f"address={address!r} and host/port contradict: give one")
        return parse_address(address, "address")
    host = None if host is None else parse_host(str(host), "host")
    port = None if port is None else parse_port(port, "port")
    if host is not None and port is not None:  # all explicit: the environment is not read
        return Address(host, port)
    env_address = _variable(environ, "LUXDB_ADDRESS")
    env_host = _variable(environ, "LUXDB_HOST")
    env_port = _variable(environ, "LUXDB_PORT")
    if env_address is not None:
        others = [name for name, value in (("LUXDB_HOST", env_host), ("LUXDB_PORT", env_port))
                  if value is not None]
        if others:
            raise ValueError(f"LUXDB_ADDRESS={env_address!r} and {' and '.join(others)} "
                             f"contradict: set LUXDB_ADDRESS or LUXDB_HOST/LUXDB_PORT")
        base = parse_address(env_address, "LUXDB_ADDRESS")
        return Address(base.host if host is None else host, base.port if port is None else port)
    if host is None:
        host = DEFAULT_HOST if env_host is None else parse_host(env_host, "LUXDB_HOST")
    if port is None:
        port = DEFAULT_PORT if env_port is None else parse_port(env_port, "LUXDB_PORT")
    return Address(host, port)


def read_secret_file(path: Union[str, os.PathLike], source: str = "secret_file") -> bytes:
    """The secret held by the file at `path`, without surrounding white space. ValueError
    naming `source` and the path if it cannot be read, is empty or is larger than
    MAX_SECRET_FILE_BYTES."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as error:
        raise ValueError(f"cannot read the secret file {source}={str(path)!r}: "
                         f"{error.strerror or error}") from error
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"the secret file {source}={str(path)!r} is larger than "
                         f"{MAX_SECRET_FILE_BYTES} bytes: is it the right file?")
    secret = data.strip()
    if not secret:
        raise ValueError(f"the secret file {source}={str(path)!r} is empty")
    return secret


class _NotGiven:
    """The default of a secret argument: left out, so looked for in the environment. An
    explicit None keeps the original client's meaning: no token (a server run with
    --insecure)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "settings.NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def resolve_secret(secret: Optional[Secret] = NOT_GIVEN,
                   secret_file: Optional[Union[str, os.PathLike]] = None, *,
                   insecure: bool = False,
                   environ: Mapping[str, str] = os.environ) -> Optional[Secret]:
    """The shared secret by the rules above, or None when there is none and `insecure` (calls
    then carry no token). ValueError for a contradiction, a bad file, or no secret at all."""
    if secret is None:  # the original API: None is a server run with --insecure
        if secret_file is not None:
            raise ValueError(f"secret=None (no token) and secret_file={str(secret_file)!r} "
                             "contradict: give one")
        return None
    if secret is not NOT_GIVEN:
        if secret_file is not None:
            raise ValueError(f"secret and secret_file={str(secret_file)!r} contradict: give one")
        if not secret:
            raise ValueError("secret is empty")
        return secret
    if secret_file is not None:
        return read_secret_file(secret_file)
    env_secret = _variable(environ, "LUXDB_SECRET")
    env_file = _variable(environ, "LUXDB_SECRET_FILE")
    if env_secret is not None and env_file is not None:
        raise ValueError(f"LUXDB_SECRET and LUXDB_SECRET_FILE are both set "
                         f"(LUXDB_SECRET_FILE={env_file!r}): set one of them")
    if env_secret is not None:
        return env_secret
    if env_file is not None:
        return read_secret_file(env_file, "LUXDB_SECRET_FILE")
    if insecure:
        return None
    raise ValueError("no secret: pass secret= or secret_file=, or set LUXDB_SECRET or "
                     "LUXDB_SECRET_FILE (or pass insecure=True for a server run with "
                     "--insecure)")


def resolve(host: Optional[str] = None, port: Optional[Union[int, str]] = None,
            secret: Optional[Secret] = NOT_GIVEN, *, address: Optional[str] = None,
            secret_file: Optional[Union[str, os.PathLike]] = None, insecure: bool = False,
            environ: Mapping[str, str] = os.environ) -> Tuple[Address, Optional[Secret]]:
    """(resolve_address(...), resolve_secret(...)): what a client connects to, and with."""
    return (resolve_address(host, port, address=address, environ=environ),
            resolve_secret(secret, secret_file, insecure=insecure, environ=environ))
