"""LuxDB call tokens (see the README's Security section for the format).

    key = derive_key(secret)                   # once: PBKDF2-HMAC-SHA256, ~0.2 s
    token = mint_token(key, "/luxdb.v1.LuxDB/ListIndexes")
    metadata = [("authorization", "Bearer " + token)]

or let every call carry a fresh token:

    channel = grpc.intercept_channel(grpc.insecure_channel(address), TokenInterceptor(key))
    channel = grpc.aio.insecure_channel(address, interceptors=[AsyncTokenInterceptor(key)])
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import time
from typing import Any, Callable, Mapping, Optional, Tuple, Union

import grpc
import grpc.aio

DEFAULT_SALT = "wYfJIy4Nx1hPcxiljwg"
DEFAULT_ITERATIONS = 2**18
TOKEN_VERSION = 1
ANY_METHOD = "*"


def kdf_params_from_environment(environ: Mapping[str, str] = os.environ) -> Tuple[str, int]:
    """(salt, iterations) from LUXDB_SALT (or the misspelt LUXBD_SALT) and KDF_ITERATIONS."""
    salt = environ.get("LUXDB_SALT", environ.get("LUXBD_SALT", DEFAULT_SALT))
    iterations = int(environ.get("KDF_ITERATIONS", DEFAULT_ITERATIONS))
    return salt, iterations


def derive_key(secret: Union[str, bytes], salt: Optional[str] = None,
               iterations: Optional[int] = None) -> bytes:
    """The 32-byte key: PBKDF2-HMAC-SHA256(secret, salt, iterations). Defaults come from the
    environment as the server reads them."""
    env_salt, env_iterations = kdf_params_from_environment()
    salt = env_salt if salt is None else salt
    iterations = env_iterations if iterations is None else iterations
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise ValueError("the shared secret is empty")
    return hashlib.pbkdf2_hmac("sha256", secret, salt.encode(), iterations)


class Minter:
    """Mints tokens with one key. The HMAC's keyed state is computed once, here; each token
    copies it, which saves a third of a token's cost on a client's every call."""

    _VERSION = bytes([TOKEN_VERSION])

    def __init__(self, key: bytes) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def mint(self, method: str, now: Optional[float] = None,
             nonce: Optional[bytes] = None) -> str:
        """A token for one call of `method` ("/luxdb.v1.LuxDB/QueryIndex", or "*" for any)."""
        millis = int((time.time() if now is None else now) * 1000)
        body = self._VERSION + struct.pack(">q", millis) + (nonce or os.urandom(16))
        mac = self._mac.copy()
        mac.update(body + method.encode())
        return base64.urlsafe_b64encode(body + mac.digest()).rstrip(b"=").decode()


def mint_token(key: bytes, method: str, now: Optional[float] = None,
               nonce: Optional[bytes] = None) -> str:
    """A token for one call of `method` ("/luxdb.v1.LuxDB/QueryIndex", or "*" for any)."""
    return Minter(key).mint(method, now, nonce)


class _Details(grpc.ClientCallDetails):
    def __init__(self, details, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class TokenInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds "authorization: Bearer <token>" for the called method to every unary call."""

    def __init__(self, key: bytes) -> None:
        self._minter = Minter(key)

    def intercept_unary_unary(self, continuation: Callable[..., Any],
                              details: grpc.ClientCallDetails, request: Any) -> Any:
        metadata = list(details.metadata or [])
        metadata.append(("authorization", "Bearer " + self._minter.mint(details.method)))
        return continuation(_Details(details, metadata), request)


class AsyncTokenInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """TokenInterceptor for grpc.aio channels (`interceptors=[AsyncTokenInterceptor(key)]`)."""

    def __init__(self, key: bytes) -> None:
        self._minter = Minter(key)

    async def intercept_unary_unary(self, continuation: Callable[..., Any],
                                    details: grpc.aio.ClientCallDetails, request: Any) -> Any:
        method = details.method
        if isinstance(method, bytes):  # grpc.aio hands the method over encoded
            method = method.decode()
        metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
        metadata.add("authorization", "Bearer " + self._minter.mint(method))
        return await continuation(details._replace(metadata=metadata), request)
