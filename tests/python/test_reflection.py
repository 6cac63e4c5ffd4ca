"""Server reflection as grpcurl uses it (`list`, `describe`): open to calls without a token.

The client stubs are generated at test time from Debian's grpc-proto package with protoc and
grpc_python_plugin (both build dependencies): gRPC 1.51's C++ server offers reflection as
grpc.reflection.v1alpha, and Debian's grpcio ships no reflection client.
"""

import importlib
import os
import shutil
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pb2

REFLECTION_PROTO = "/usr/share/grpc-proto/grpc/reflection/v1alpha/reflection.proto"

# What grpcurl describes for luxdb.v1.LuxDB, in order: each RPC X is unary, XRequest -> XResponse.
LUXDB_METHODS = [
    "CreateIndex", "InitIndex", "DeleteIndex", "IndexExists", "ListIndexes", "DescribeIndex",
    "SetEf", "AddItems", "DeleteItems", "QueryIndex", "ResizeIndex", "GetIds", "GetElements",
    "Backup", "CompactIndex", "SetAttributes",
]


@pytest.fixture(scope="module")
def reflection(tmp_path_factory):
    """(reflection_pb2, reflection_pb2_grpc) generated from Debian's reflection.proto.

    The .proto is compiled as a top-level file: kept under grpc/, its modules would be
    imported as grpc.reflection.v1alpha and collide with the grpc package itself.
    """
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
    if protoc is None or not os.access(plugin, os.X_OK):
        pytest.fail("protoc and grpc_python_plugin are needed: scripts/install-deps.sh installs "
                    "protobuf-compiler and protobuf-compiler-grpc", pytrace=False)
    if not os.path.exists(REFLECTION_PROTO):
        pytest.fail(f"{REFLECTION_PROTO} is missing: scripts/install-deps.sh installs grpc-proto",
                    pytrace=False)
    out = tmp_path_factory.mktemp("reflection_stubs")
    shutil.copy(REFLECTION_PROTO, out / "luxdb_test_reflection.proto")
    subprocess.run(
        [protoc, f"-I{out}", f"--python_out={out}", f"--grpc_out={out}",
         f"--plugin=protoc-gen-grpc={plugin}", str(out / "luxdb_test_reflection.proto")],
        check=True, capture_output=True, text=True)
    sys.path.insert(0, str(out))
    try:
        return (importlib.import_module("luxdb_test_reflection_pb2"),
                importlib.import_module("luxdb_test_reflection_pb2_grpc"))
    finally:
        sys.path.remove(str(out))


@pytest.fixture
def ask(luxdb_server, reflection):
    """ask(field=value) sends one ServerReflectionRequest on a channel without a token and
    returns the server's ServerReflectionResponse."""
    pb, pb_grpc = reflection
    channel = grpc.insecure_channel(luxdb_server.address)  # no token interceptor
    stub = pb_grpc.ServerReflectionStub(channel)

    def ask_one(**fields):
        request = pb.ServerReflectionRequest(host="", **fields)
        responses = stub.ServerReflectionInfo(iter([request]), timeout=30)
        return next(responses)

    yield ask_one
    channel.close()


def file_containing(ask, symbol):
    """The FileDescriptorProtos the server returns for `symbol`, by file name."""
    response = ask(file_containing_symbol=symbol)
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    files = {}
    for serialized in response.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        files[file.name] = file
    return files


def test_list_services_without_a_token(ask):
    response = ask(list_services="")
    assert response.WhichOneof("message_response") == "list_services_response", response
    services = {s.name for s in response.list_services_response.service}
    assert {"luxdb.v1.LuxDB", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= services, services


def test_describe_luxdb_service_lists_every_method_with_its_types(ask):
    files = file_containing(ask, "luxdb.v1.LuxDB")
    assert "luxdb/v1/luxdb.proto" in files, sorted(files)
    file = files["luxdb/v1/luxdb.proto"]
    assert file.package == "luxdb.v1"
    [service] = [s for s in file.service if s.name == "LuxDB"]
    methods = [(m.name, m.input_type, m.output_type, m.client_streaming, m.server_streaming)
               for m in service.method]
    unary = [(name, f".luxdb.v1.{name}Request", f".luxdb.v1.{name}Response", False, False)
             for name in LUXDB_METHODS]
    # QueryStream, after QueryIndex: a stream of QueryIndex's messages both ways.
    stream = ("QueryStream", ".luxdb.v1.QueryIndexRequest", ".luxdb.v1.QueryIndexResponse",
              True, True)
    at = LUXDB_METHODS.index("QueryIndex") + 1
    assert methods == unary[:at] + [stream] + unary[at:]
    # Every request and response type is described in the same file, so a client can build
    # calls (grpcurl -d '{...}') from reflection alone.
    messages = {m.name for m in file.message_type}
    for name in LUXDB_METHODS:
        assert {f"{name}Request", f"{name}Response"} <= messages, name


def test_describe_message_shows_packed_row_major_vectors(ask):
    files = file_containing(ask, "luxdb.v1.AddItemsRequest")
    file = files["luxdb/v1/luxdb.proto"]
    [message] = [m for m in file.message_type if m.name == "AddItemsRequest"]
    fields = {f.name: f for f in message.field}
    vectors = fields["vectors"]
    assert vectors.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    assert vectors.type == descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT
    assert fields["ids"].type == descriptor_pb2.FieldDescriptorProto.TYPE_UINT64
    space = [e for e in file.enum_type if e.name == "Space"][0]
    assert [v.name for v in space.value] == ["SPACE_UNSPECIFIED", "L2", "IP", "COSINE"]


def test_unknown_symbol_is_reported_not_found(ask):
    response = ask(file_containing_symbol="luxdb.v1.NoSuchService")
    assert response.WhichOneof("message_response") == "error_response", response
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health_service_is_described_not_only_listed(ask):
    # grpcurl resolves a service through file_containing_symbol before it calls or describes it
    # (`grpcurl ... grpc.health.v1.Health/Check`), and grpcui does so for every listed service.
    files = file_containing(ask, "grpc.health.v1.Health")
    file = files["grpc/health/v1/health.proto"]
    [service] = [s for s in file.service if s.name == "Health"]
    assert [(m.name, m.server_streaming) for m in service.method] == [("Check", False),
                                                                       ("Watch", True)]
