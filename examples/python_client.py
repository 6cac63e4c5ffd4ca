"""LuxDB's Python clients: luxdb.client (asyncio) and luxdb.sync_client (blocking).

Install the package once (README, "Python client"), then run this against a server started
with ./run.sh, which keeps its generated secret in data/secret:
    /usr/bin/python3 -m venv --system-site-packages .venv
    .venv/bin/pip install --no-build-isolation ./clients/python
    LUXDB_SECRET_FILE=data/secret .venv/bin/python examples/python_client.py
The server is LUXDB_ADDRESS (or LUXDB_HOST / LUXDB_PORT), 127.0.0.1:8484 by default, or the
optional argument HOST:PORT; the secret LUXDB_SECRET or LUXDB_SECRET_FILE (README,
"Connecting: address and secret").
"""
import asyncio
import sys

import numpy as np

import luxdb.client
import luxdb.sync_client
from luxdb.exceptions import IndexDoesNotExistException

if len(sys.argv) > 2:
    sys.exit(f"usage: {sys.argv[0]} [HOST:PORT]")
address = sys.argv[1] if len(sys.argv) > 1 else None  # None: from the environment
vectors = np.random.default_rng(7).random((1000, 16), dtype=np.float32)


async def main():
    async with luxdb.client.connect(address=address) as client:
        if await client.index_exists("example"):
            await client.delete_index("example")
        await client.create_index("example", "cosine", 16)
        await client.init_index("example", max_elements=10_000)
        await client.add_items("example", vectors, np.arange(1000))
        labels, distances = await client.query_index("example", vectors[:2], k=3)
        print("nearest:", labels.tolist())  # each vector finds itself first
        # Attributes (also add_items' fourth argument), and a query of the items matching a
        # filter: the row is padded with 2**64 - 1 when fewer than k match.
        await client.set_attributes("example", [5, 6, 7], [
            {"colour": "red", "size": 3}, {"colour": "blue"},
            {"colour": "red", "tags": ["a", "b"]}])
        labels, _ = await client.query_index("example", vectors[5], k=3,
                                             filter={"must": [{"key": "colour", "equals": "red"}]})
        print("red:", labels.tolist())  # [[5, 7, 18446744073709551615]]


asyncio.run(main())

with luxdb.sync_client.connect(address=address) as client:
    print("count:", client.count("example"), "info:", client.info("example"))
    print("vector 0 starts", client.get_items("example", [0])[0, :3])
    print("attributes:", client.get_items("example", [7, 8], with_attributes=True)[1])
    try:
        client.count("missing")
    except IndexDoesNotExistException as error:  # a RuntimeError, as in the original client
        print("error:", error)
