"""LuxDB Python client package.

The build assembles it in <build>/python/luxdb together with the gRPC stubs generated from
proto/ (luxdb.v1.luxdb_pb2 and luxdb.v1.luxdb_pb2_grpc): put <build>/python on PYTHONPATH.
"""
