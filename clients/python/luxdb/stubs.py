"""The generated gRPC stubs, for plain-gRPC use (see luxdb.auth for the call tokens):

    from luxdb.stubs import luxdb_pb2 as pb, luxdb_pb2_grpc as pb_grpc
    stub = pb_grpc.LuxDBStub(channel)

They are luxdb.v1.luxdb_pb2 and luxdb.v1.luxdb_pb2_grpc, generated from proto/luxdb/v1 by the
build.
"""

from luxdb.v1 import luxdb_pb2, luxdb_pb2_grpc

__all__ = ["luxdb_pb2", "luxdb_pb2_grpc"]
