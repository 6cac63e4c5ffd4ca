"""`luxdb token` prints tokens that plain gRPC tools (grpcurl, a raw stub) can use."""

import os
import subprocess

import grpc
import pytest

from luxdb.v1 import luxdb_pb2 as pb
from luxdb.v1 import luxdb_pb2_grpc as pb_grpc
from luxdb_testing import TEST_SECRET, server_environment


def cli_token(*args, secret=TEST_SECRET):
    binary = os.environ.get("LUXDB_CLI_BIN")
    if not binary:
        pytest.fail("LUXDB_CLI_BIN is not set: run through CTest", pytrace=False)
    result = subprocess.run([binary, "--secret", secret, "token", *args],
                            capture_output=True, text=True, timeout=30,
                            env=server_environment())
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def raw_stub(server):
    return pb_grpc.LuxDBStub(grpc.insecure_channel(server.address))


def test_method_token_works_once_and_only_for_its_method(luxdb_server):
    stub = raw_stub(luxdb_server)
    token = cli_token("--method", "luxdb.v1.LuxDB/ListIndexes")
    metadata = [("authorization", "Bearer " + token)]
    assert list(stub.ListIndexes(pb.ListIndexesRequest(), metadata=metadata).indexes) == []
    with pytest.raises(grpc.RpcError) as replay:
        stub.ListIndexes(pb.ListIndexesRequest(), metadata=metadata)
    assert replay.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "replayed" in replay.value.details()

    other = [("authorization", "Bearer " + cli_token("--method", "luxdb.v1.LuxDB/ListIndexes"))]
    with pytest.raises(grpc.RpcError) as wrong_method:
        stub.CreateIndex(pb.CreateIndexRequest(name="x", space=pb.L2, dim=2), metadata=other)
    assert wrong_method.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not luxdb_server.stub.IndexExists(pb.IndexExistsRequest(name="x")).exists


def test_default_token_is_valid_for_any_method(luxdb_server):
    stub = raw_stub(luxdb_server)
    stub.CreateIndex(pb.CreateIndexRequest(name="any", space=pb.L2, dim=2),
                     metadata=[("authorization", "Bearer " + cli_token())])
    assert luxdb_server.stub.IndexExists(pb.IndexExistsRequest(name="any")).exists


def test_token_from_another_secret_is_refused(luxdb_server):
    stub = raw_stub(luxdb_server)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListIndexes(pb.ListIndexesRequest(),
                         metadata=[("authorization", "Bearer " + cli_token(secret="wrong"))])
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
