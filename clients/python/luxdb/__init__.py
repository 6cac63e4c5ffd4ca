"""LuxDB Python client package.

    luxdb.client        Client: the asyncio client (async with luxdb.client.connect(...))
    luxdb.sync_client   SyncClient: the same API, blocking (with luxdb.sync_client.connect(...))
    luxdb.settings      where connect() finds the server and the secret (LUXDB_ADDRESS, ...)
    luxdb.exceptions    LuxDBError (a RuntimeError) and its subclasses
    luxdb.auth          key derivation, call tokens and gRPC interceptors for plain gRPC
    luxdb.stubs         the generated stubs (luxdb.v1.luxdb_pb2 and luxdb.v1.luxdb_pb2_grpc)

The build assembles it in <build>/python/luxdb together with the gRPC stubs generated from
proto/: put <build>/python on PYTHONPATH.
"""

from luxdb import auth, client, exceptions, settings, stubs, sync_client
from luxdb.client import Client
from luxdb.exceptions import (AuthenticationError, IndexAlreadyExistsException,
                              IndexDoesNotExistException, IndexNotInitializedException,
                              InvalidArgumentError, ItemDoesNotExistException, KNNBaseException,
                              LuxDBError, UnknownSpaceException)
from luxdb.sync_client import SyncClient

__all__ = [
    "auth", "client", "exceptions", "settings", "stubs", "sync_client", "Client", "SyncClient",
    "AuthenticationError", "IndexAlreadyExistsException", "IndexDoesNotExistException",
    "IndexNotInitializedException", "InvalidArgumentError", "ItemDoesNotExistException",
    "KNNBaseException", "LuxDBError", "UnknownSpaceException",
]
