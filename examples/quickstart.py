"""LuxDB quick start: create an index, add vectors, query them and read them back, over plain
gRPC with the stubs generated from proto/ and the call tokens of luxdb.auth.

Install the package once (README, "Python client"), then run this against a server started
with ./run.sh (another terminal), which keeps its generated secret in data/secret:
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation ./clients/python
    LUXDB_SECRET_FILE=data/secret .venv/bin/python examples/quickstart.py
The server and the secret are found as the clients' connect() finds them (README,
"Connecting: address and secret"): the optional argument HOST:PORT, else LUXDB_ADDRESS (or
LUXDB_HOST / LUXDB_PORT), else 127.0.0.1:8484; LUXDB_SECRET or LUXDB_SECRET_FILE.
"""
import sys

import grpc
import numpy as np
from luxdb import auth, settings
from luxdb.v1 import luxdb_pb2 as pb
from luxdb.v1 import luxdb_pb2_grpc as pb_grpc

if len(sys.argv) > 2:
    sys.exit(f"usage: {sys.argv[0]} [HOST:PORT]")
address = settings.resolve_address(address=sys.argv[1] if len(sys.argv) > 1 else None)
key = auth.derive_key(settings.resolve_secret())  # once; every call then carries a token
channel = grpc.intercept_channel(grpc.insecure_channel(str(address)), auth.TokenInterceptor(key))
db = pb_grpc.LuxDBStub(channel)

name = "quickstart"
if db.IndexExists(pb.IndexExistsRequest(name=name)).exists:
    db.DeleteIndex(pb.DeleteIndexRequest(name=name))
db.CreateIndex(pb.CreateIndexRequest(name=name, space=pb.L2, dim=4))
db.InitIndex(pb.InitIndexRequest(name=name, max_elements=1000))

vectors = np.random.default_rng(7).random((100, 4), dtype=np.float32)
ids = np.arange(1000, 1100, dtype=np.uint64)
added = db.AddItems(pb.AddItemsRequest(name=name, vectors=vectors.ravel(), ids=ids)).added
print(f"added {added} vectors")

# Two queries in one call: the first two stored vectors. Results are row-major, k per query.
reply = db.QueryIndex(pb.QueryIndexRequest(name=name, vectors=vectors[:2].ravel(), k=3))
labels = np.array(reply.ids, dtype=np.uint64).reshape(2, reply.k)
distances = np.array(reply.distances, dtype=np.float32).reshape(2, reply.k)
print("nearest ids:", labels.tolist())
print("squared L2 distances:", distances.round(4).tolist())
assert labels[0, 0] == 1000 and labels[1, 0] == 1001

elements = db.GetElements(pb.GetElementsRequest(name=name, ids=[1000, 1001]))
stored = np.array(elements.vectors, dtype=np.float32).reshape(2, elements.dim)
assert np.array_equal(stored, vectors[:2])
print("read back", stored.shape[0], "vectors; index:", db.DescribeIndex(
    pb.DescribeIndexRequest(name=name)).info.element_count, "items")
