"""Exceptions of the LuxDB clients.

Every error the server answers reaches the caller as a LuxDBError (a RuntimeError), of the
subclass below that matches its gRPC status, carrying the status as `.code` (a
grpc.StatusCode) and the server's message as `.details`:

    ALREADY_EXISTS                         IndexAlreadyExistsException
    NOT_FOUND for an index                 IndexDoesNotExistException
    NOT_FOUND for an item id               ItemDoesNotExistException
    FAILED_PRECONDITION "not initialised"  IndexNotInitializedException
    INVALID_ARGUMENT                       InvalidArgumentError (also a ValueError);
                                           UnknownSpaceException for a bad space
    UNAUTHENTICATED                        AuthenticationError
    anything else                          LuxDBError

Errors the client finds before calling (an unknown space, ids that do not match the vectors)
raise the same classes with `.code` set as the server would have set it.
"""

from __future__ import annotations

from typing import Any, Optional, Type

import grpc


class LuxDBError(RuntimeError):
    """Base of every LuxDB error.

    code:    the grpc.StatusCode of the failed call (None for a local error without one)
    details: the server's message (or the client's, for a local error)
    name:    the index the call was about, if any
    """

    def __init__(self, message: str = "", *, code: Optional[grpc.StatusCode] = None,
                 details: Optional[str] = None, name: Optional[str] = None) -> None:
        super().__init__(message)
        self.code: Optional[grpc.StatusCode] = code
        self.details: str = message if details is None else details
        self.name: Optional[str] = name


# The original LuxDB client's name for the base class.
KNNBaseException = LuxDBError


class AuthenticationError(LuxDBError):
    """The server refused the call's token: most often the client's secret (or its
    LUXDB_SALT / KDF_ITERATIONS) differs from the server's."""


class IndexAlreadyExistsException(LuxDBError):
    """create_index named an index that already exists."""


class IndexDoesNotExistException(LuxDBError):
    """The call named an index that does not exist."""


class ItemDoesNotExistException(LuxDBError):
    """The call named an item id that the index does not hold (or holds only as deleted)."""


class IndexNotInitializedException(LuxDBError):
    """The index was created but init_index has not been called yet."""

    @property
    def obj(self) -> Optional[str]:
        """The original client's attribute: the index name."""
        return self.name


class InvalidArgumentError(LuxDBError, ValueError):
    """The server (or the client, before calling) refused an argument: wrong dimension,
    NaN or infinite components, ids that do not match the vectors, k out of range, a bad
    index name..."""


class UnknownSpaceException(InvalidArgumentError):
    """create_index was given a space other than "l2", "ip" or "cosine"."""

    def __init__(self, message: str = "", *, space: object = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.space = space


def error_from_rpc(error: grpc.RpcError, name: Optional[str] = None) -> LuxDBError:
    """The LuxDBError for a failed gRPC call (a grpc.RpcError with code() and details())."""
    code = error.code()
    details = error.details() or ""
    cls: Type[LuxDBError]
    if code == grpc.StatusCode.ALREADY_EXISTS:
        cls = IndexAlreadyExistsException
    elif code == grpc.StatusCode.NOT_FOUND:
        cls = ItemDoesNotExistException if "no item with id" in details else \
            IndexDoesNotExistException
    elif code == grpc.StatusCode.FAILED_PRECONDITION and (
            "not initialised" in details or "not initialized" in details):
        cls = IndexNotInitializedException
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        cls = AuthenticationError
    elif code == grpc.StatusCode.INVALID_ARGUMENT:
        unknown_space = "unknown space" in details or "space is unspecified" in details
        cls = UnknownSpaceException if unknown_space else InvalidArgumentError
    else:
        cls = LuxDBError
    message = f"{code.name}: {details}" if cls is LuxDBError else details
    return cls(message, code=code, details=details, name=name)
