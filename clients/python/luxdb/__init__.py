"""LuxDB Python client package.

    luxdb.client        Client: the asyncio client (async with luxdb.client.connect(...))
    luxdb.sync_client   SyncClient: the same API, blocking (with luxdb.sync_client.connect(...))
    luxdb.settings      where connect() finds the server and the secret (LUXDB_ADDRESS, ...)
    luxdb.exceptions    LuxDBError (a RuntimeError) and its subclasses
    luxdb.auth          key derivation, call tokens and gRPC interceptors for plain gRPC
    luxdb.stubs         the generated stubs (luxdb.v1.luxdb_pb2 and luxdb.v1.luxdb_pb2_grpc)

Install it with pip from the repository (README, "Python client"):
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation ./clients/python
The installed package holds what the build makes: luxdb/_version.py (from the repository's
VERSION) and the stubs generated from proto/. The CMake build assembles the same package in
<build>/python, which the tests put on PYTHONPATH.
"""

try:
    from luxdb._version import __version__
    from luxdb.v1 import luxdb_pb2 as _generated  # noqa: F401 (checks the stubs are there)
except ModuleNotFoundError as error:
    if error.name not in ("luxdb._version", "luxdb.v1", "luxdb.v1.luxdb_pb2"):
        raise
    raise ImportError(
        f"the luxdb package at {__path__[0]} is its source, without the parts the build "
        f"makes ({error}): install it (pip install --no-build-isolation ./clients/python) "
        f"or put <build>/python, where the CMake build assembles it, on PYTHONPATH") from error

from luxdb import auth, client, exceptions, settings, stubs, sync_client
from luxdb.client import Client
from luxdb.exceptions import (AuthenticationError, IndexAlreadyExistsException,
                              IndexDoesNotExistException, IndexNotInitializedException,
                              InvalidArgumentError, ItemDoesNotExistException, KNNBaseException,
                              LuxDBError, UnknownSpaceException)
from luxdb.sync_client import SyncClient

__all__ = [
    "__version__", "auth", "client", "exceptions", "settings", "stubs", "sync_client", "Client",
    "SyncClient", "AuthenticationError", "IndexAlreadyExistsException",
    "IndexDoesNotExistException", "IndexNotInitializedException", "InvalidArgumentError",
    "ItemDoesNotExistException", "KNNBaseException", "LuxDBError", "UnknownSpaceException",
]
