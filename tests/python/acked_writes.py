"""Concurrent writers that record which writes the server acknowledged, and the check that a
restarted server still holds exactly those.

Used by the shutdown test (SIGTERM while writing) and the crash harness (SIGKILL while
writing). Each writer owns an id range, so the writers never touch each other's items:

- AddItems of a batch of 1..MAX_BATCH new ids with random vectors;
- now and then DeleteItems of a few of its own acknowledged, live ids.

A call that returned OK is *acknowledged* and must survive anything. A call that failed, or
whose answer never came because the server went away, is *uncertain*: its batch may or may
not have been applied, but only as a whole (a batch is all or nothing).
"""

import random
import threading
import time

import grpc
import numpy as np

from luxdb.v1 import luxdb_pb2
from luxdb_testing import add_items_request

MAX_BATCH = 40
DELETE_EVERY = 5  # one call in DELETE_EVERY is a DeleteItems
ID_STRIDE = 1 << 40  # writer w uses ids w * ID_STRIDE + 0, 1, 2, ...
CALL_TIMEOUT_S = 30


class Writer:
    """One writer thread's history."""

    def __init__(self, number, dim, seed):
        self.number = number
        self.dim = dim
        self.rng = np.random.default_rng(seed)
        self.pick = random.Random(seed)
        self.next_id = number * ID_STRIDE
        self.vectors = {}  # id -> float32 vector, for every id ever sent
        self.acked_live = set()  # acknowledged adds not (acknowledged or uncertainly) deleted
        self.acked_deleted = set()
        self.uncertain_adds = []  # id lists of AddItems calls without an answer
        self.uncertain_deletes = []  # id lists of DeleteItems calls without an answer
        self.calls = 0
        self.acked_calls = 0
        self.errors = {}  # status code name -> count

    def step(self, stub, name):
        self.calls += 1
        deletable = sorted(self.acked_live)
        if deletable and self.calls % DELETE_EVERY == 0:
            ids = self.pick.sample(deletable, min(len(deletable), self.pick.randint(1, 5)))
            self.acked_live.difference_update(ids)  # from now on uncertain until acknowledged
            try:
                stub.DeleteItems(luxdb_pb2.DeleteItemsRequest(name=name, ids=ids),
                                 timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as error:
                self.uncertain_deletes.append(ids)
                return error
            self.acked_deleted.update(ids)
            self.acked_calls += 1
            return None
        n = self.pick.randint(1, MAX_BATCH)
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        vectors = self.rng.standard_normal((n, self.dim)).astype(np.float32)
        for i, v in zip(ids, vectors):
            self.vectors[i] = v
        try:
            stub.AddItems(add_items_request(name, vectors, ids), timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            self.uncertain_adds.append(ids)
            return error
        self.acked_live.update(ids)
        self.acked_calls += 1
        return None


class WriterGroup:
    """`count` writer threads adding to and deleting from index `name` until stop()."""

    def __init__(self, stub, name, dim, count=4, seed=0):
        self.stub = stub
        self.name = name
        self.writers = [Writer(w, dim, seed * 1000 + w) for w in range(count)]
        self._stop = threading.Event()
        self._threads = []
        self.first_error = [None] * count

    def start(self):
        for w in self.writers:
            t = threading.Thread(target=self._run, args=(w,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self, writer):
        while not self._stop.is_set():
            error = writer.step(self.stub, self.name)
            if error is not None:
                code = error.code().name
                writer.errors[code] = writer.errors.get(code, 0) + 1
                if self.first_error[writer.number] is None:
                    self.first_error[writer.number] = f"{code}: {error.details()}"
                time.sleep(0.01)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2 * CALL_TIMEOUT_S)
            assert not t.is_alive(), "a writer did not return"

    @property
    def acked_calls(self):
        return sum(w.acked_calls for w in self.writers)

    def summary(self):
        uncertain = sum(len(w.uncertain_adds) + len(w.uncertain_deletes) for w in self.writers)
        errors = {}
        for w in self.writers:
            for code, count in w.errors.items():
                errors[code] = errors.get(code, 0) + count
        return (f"{self.acked_calls} acknowledged calls, {uncertain} uncertain, "
                f"errors {errors or 'none'}")

    def verify(self, stub):
        """Asserts that the server behind `stub` holds every acknowledged write and nothing
        half-applied; returns the number of live items checked."""
        live = set(stub.GetIds(luxdb_pb2.GetIdsRequest(name=self.name),
                               timeout=CALL_TIMEOUT_S).ids)
        expected_live = set()
        for w in self.writers:
            missing = w.acked_live - live
            assert not missing, (
                f"writer {w.number}: {len(missing)} acknowledged ids missing after restart, "
                f"e.g. {sorted(missing)[:5]}")
            back = w.acked_deleted & live
            assert not back, (
                f"writer {w.number}: {len(back)} acknowledged deletes reappeared, "
                f"e.g. {sorted(back)[:5]}")
            for ids in w.uncertain_adds:
                present = [i for i in ids if i in live]
                assert len(present) in (0, len(ids)), (
                    f"writer {w.number}: an unacknowledged AddItems of {len(ids)} ids is half "
                    f"applied ({len(present)} present: {present[:5]}...)")
            for ids in w.uncertain_deletes:
                present = [i for i in ids if i in live]
                assert len(present) in (0, len(ids)), (
                    f"writer {w.number}: an unacknowledged DeleteItems of {len(ids)} ids is "
                    f"half applied ({len(present)} still live)")
            expected_live |= w.acked_live
            for ids in w.uncertain_adds + w.uncertain_deletes:
                expected_live |= set(ids) & live
        unknown = live - expected_live
        assert not unknown, f"{len(unknown)} ids live that no writer wrote: {sorted(unknown)[:5]}"

        # Every live item's vector is bit-identical to the one sent.
        ordered = sorted(live)
        vectors = {}
        for w in self.writers:
            vectors.update(w.vectors)
        dim = self.writers[0].dim
        for start in range(0, len(ordered), 5000):
            chunk = ordered[start:start + 5000]
            got = stub.GetElements(luxdb_pb2.GetElementsRequest(name=self.name, ids=chunk),
                                   timeout=CALL_TIMEOUT_S)
            got = np.array(got.vectors, dtype=np.float32).reshape(len(chunk), dim)
            want = np.stack([vectors[i] for i in chunk])
            differ = np.flatnonzero(np.any(got.view(np.uint32) != want.view(np.uint32), axis=1))
            assert differ.size == 0, (
                f"{differ.size} vectors differ from what was sent, e.g. id {chunk[differ[0]]}")

        # Queries work on the restarted index: a stored vector finds itself.
        if ordered:
            probe = random.Random(7).sample(ordered, min(20, len(ordered)))
            request = luxdb_pb2.QueryIndexRequest(name=self.name, k=1, ef=200)
            request.vectors.extend(np.stack([vectors[i] for i in probe]).ravel().tolist())
            answer = stub.QueryIndex(request, timeout=CALL_TIMEOUT_S)
            found = sum(1 for want, got in zip(probe, answer.ids) if want == got)
            assert found >= len(probe) - 1, (
                f"only {found} of {len(probe)} stored vectors found themselves after restart")
        return len(ordered)
