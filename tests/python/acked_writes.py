"""Concurrent writers that record which writes the server acknowledged, and the check that a
restarted server still holds exactly those.

Used by the shutdown test (SIGTERM while writing) and the crash harness (SIGKILL while
writing). Each writer owns an id range, so the writers never touch each other's items:

- AddItems of a batch of 1..max_batch new ids with random vectors;
- now and then DeleteItems of a few of its own acknowledged, live ids.

Every added item carries attributes derived from its id (expected_attributes), stored in the
same write as its vector: a restarted server must return them with the item, and a filtered
query on them must find it.

A call that returned OK is *acknowledged* and must survive anything. A call that failed, or
whose answer never came because the server went away, is *uncertain*: its batch may or may
not have been applied, but only as a whole (a batch is all or nothing). Once a restarted
server has shown the outcome, settle() turns it into an expectation for every later restart.

Several groups may write to one index (one after another, or at once) as long as their id
ranges are disjoint (`id_base`); verify_groups() checks them together.
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
ID_STRIDE = 1 << 40  # writer w uses ids id_base + w * ID_STRIDE + 0, 1, 2, ...
CALL_TIMEOUT_S = 30


ATTRIBUTE_SLOTS = 13


def expected_attributes(item_id):
    """The attributes every add gives item `item_id`: {"slot": id % 13, "odd": id is odd}."""
    return {"slot": item_id % ATTRIBUTE_SLOTS, "odd": item_id % 2 == 1}


def with_attributes(request, ids):
    """Adds expected_attributes of each id to an AddItemsRequest."""
    for i in ids:
        item = request.attributes.add()
        item.attributes.add(key="odd").values.add().b = i % 2 == 1
        item.attributes.add(key="slot").values.add().i = i % ATTRIBUTE_SLOTS
    return request


def attributes_dict(message):
    """A luxdb_pb2.Attributes as {key: value} (single values)."""
    out = {}
    for a in message.attributes:
        value = a.values[0]
        out[a.key] = getattr(value, value.WhichOneof("kind"))
    return out


def cosine_normalized(vectors):
    """What a cosine index stores for float32 `vectors` (n, dim), bit for bit: the engine's
    Normalize (engine/index.cc) sums squares left to right in float32, then multiplies every
    component by 1 / (sqrt(sum) + 1e-30f)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norm = np.zeros(vectors.shape[0], dtype=np.float32)
    for j in range(vectors.shape[1]):
        norm = norm + vectors[:, j] * vectors[:, j]
    scale = np.float32(1) / (np.sqrt(norm) + np.float32(1e-30))
    return vectors * scale[:, None]


class Writer:
    """One writer's history (a writer thread's, or the bulk batches of a group)."""

    def __init__(self, number, dim, seed, id_base=0, normalize=False, max_batch=MAX_BATCH):
        self.number = number
        self.dim = dim
        self.normalize = normalize
        self.max_batch = max_batch
        self.rng = np.random.default_rng(seed)
        self.pick = random.Random(seed)
        self.first_id = self.next_id = id_base + number * ID_STRIDE
        self.vectors = {}  # id -> float32 vector the server must return, for every id sent
        self.acked_live = set()  # acknowledged adds not (acknowledged or uncertainly) deleted
        self.acked_deleted = set()
        self.gone = set()  # ids of uncertain adds a restarted server did not hold
        self.uncertain_adds = []  # id lists of AddItems calls without an answer
        self.uncertain_deletes = []  # id lists of DeleteItems calls without an answer
        self.calls = 0
        self.acked_calls = 0
        self.errors = {}  # status code name -> count

    def new_batch(self, name, n):
        """(ids, AddItemsRequest) of n new ids with random vectors, recorded as sent."""
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        vectors = self.rng.standard_normal((n, self.dim)).astype(np.float32)
        stored = cosine_normalized(vectors) if self.normalize else vectors
        for i, v in zip(ids, stored):
            self.vectors[i] = v
        return ids, with_attributes(add_items_request(name, vectors, ids), ids)

    def add_done(self, ids, error):
        """Records the outcome of an AddItems of `ids` (error None: acknowledged)."""
        if error is not None:
            self.uncertain_adds.append(ids)
        else:
            self.acked_live.update(ids)
            self.acked_calls += 1

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
        ids, request = self.new_batch(name, self.pick.randint(1, self.max_batch))
        try:
            stub.AddItems(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            self.add_done(ids, error)
            return error
        self.add_done(ids, None)
        return None

    @property
    def uncertain_calls(self):
        return len(self.uncertain_adds) + len(self.uncertain_deletes)

    def check(self, live, name=""):
        """Asserts this writer's expectations against the set of live ids of its index `name`;
        returns the ids this writer accounts for being live."""
        who = f"index '{name}', writer {self.number} (ids from {self.first_id})"
        missing = self.acked_live - live
        assert not missing, (
            f"{who}: {len(missing)} acknowledged ids missing after restart, "
            f"e.g. {sorted(missing)[:5]}")
        back = self.acked_deleted & live
        assert not back, (
            f"{who}: {len(back)} acknowledged deletes reappeared, "
            f"e.g. {sorted(back)[:5]}")
        back = self.gone & live
        assert not back, (
            f"{who}: {len(back)} ids of an unacknowledged AddItems that an earlier "
            f"restart did not hold appeared, e.g. {sorted(back)[:5]}")
        for ids in self.uncertain_adds:
            present = [i for i in ids if i in live]
            assert len(present) in (0, len(ids)), (
                f"{who}: an unacknowledged AddItems of {len(ids)} ids is half "
                f"applied ({len(present)} present: {present[:5]}...)")
        for ids in self.uncertain_deletes:
            present = [i for i in ids if i in live]
            assert len(present) in (0, len(ids)), (
                f"{who}: an unacknowledged DeleteItems of {len(ids)} ids is "
                f"half applied ({len(present)} still live)")
        accounted = set(self.acked_live)
        for ids in self.uncertain_adds + self.uncertain_deletes:
            accounted |= set(ids) & live
        return accounted

    def settle(self, live):
        """Turns every uncertain call into what the server shows in `live` (already check()ed):
        from now on that outcome must hold at every restart. Returns how many of the calls
        had been applied."""
        applied = 0
        for ids in self.uncertain_adds:
            if ids[0] in live:
                self.acked_live.update(ids)
                applied += 1
            else:
                self.gone.update(ids)
        for ids in self.uncertain_deletes:
            if ids[0] in live:
                self.acked_live.update(ids)
            else:
                self.acked_deleted.update(ids)
                applied += 1
        self.uncertain_adds = []
        self.uncertain_deletes = []
        return applied


class WriterGroup:
    """`count` writer threads adding to and deleting from index `name` until stop().

    `seed` picks the vectors and batch sizes, `id_base` offsets every id (groups that share an
    index need disjoint ranges: writer w writes id_base + w * ID_STRIDE + 0, 1, ...),
    `normalize` (for cosine indexes) expects the server to return unit vectors, `max_batch` is
    the largest AddItems batch. send_bulk() adds one large batch from id range `count`."""

    def __init__(self, stub, name, dim, count=4, seed=0, id_base=0, normalize=False,
                 max_batch=MAX_BATCH):
        self.stub = stub
        self.name = name
        self.dim = dim
        self.writers = [Writer(w, dim, seed * 1000 + w, id_base, normalize, max_batch)
                        for w in range(count)]
        self.bulk = Writer(count, dim, seed * 1000 + count, id_base, normalize, max_batch)
        self._stop = threading.Event()
        self._threads = []
        self.first_error = [None] * count
        self.applied_uncertain = 0  # uncertain calls settle() found applied

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

    def request_stop(self):
        """Lets every writer finish its current call and end; stop() waits for them."""
        self._stop.set()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2 * CALL_TIMEOUT_S)
            assert not t.is_alive(), "a writer did not return"

    def send_bulk(self, n, timeout=300):
        """Starts an AddItems of n new items; returns its future. Pass the future to
        bulk_done() once it has finished (or the server has gone)."""
        ids, request = self.bulk.new_batch(self.name, n)
        future = self.stub.AddItems.future(request, timeout=timeout)
        future.luxdb_ids = ids
        return future

    def bulk_done(self, future):
        """Records the outcome of a send_bulk() call; returns True if it was acknowledged."""
        try:
            future.result()
            error = None
        except grpc.RpcError as e:
            error = e
        self.bulk.calls += 1
        self.bulk.add_done(future.luxdb_ids, error)
        return error is None

    def all_writers(self):
        return [*self.writers, self.bulk]

    @property
    def acked_calls(self):
        return sum(w.acked_calls for w in self.all_writers())

    @property
    def uncertain_calls(self):
        return sum(w.uncertain_calls for w in self.all_writers())

    def summary(self):
        errors = {}
        for w in self.writers:
            for code, count in w.errors.items():
                errors[code] = errors.get(code, 0) + count
        return (f"{self.acked_calls} acknowledged calls, {self.uncertain_calls} uncertain, "
                f"errors {errors or 'none'}")

    def verify(self, stub):
        """Asserts that the server behind `stub` holds every acknowledged write and nothing
        half-applied; returns the number of live items checked."""
        return verify_groups(stub, [self])

    def settle(self, live):
        """Writer.settle for every writer; returns how many uncertain calls had been applied."""
        self.applied_uncertain += sum(w.settle(live) for w in self.all_writers())
        return self.applied_uncertain


def verify_groups(stub, groups, settle=False):
    """Asserts that the server behind `stub` holds every acknowledged write of every group and
    nothing half-applied, that no index holds a live id none of its groups wrote, that every
    live vector is bit-identical to the one sent (normalised for cosine) and that stored
    vectors find themselves. With `settle`, the outcome of every uncertain call is then fixed
    for later verifications. Returns the number of live items checked."""
    by_index = {}
    for group in groups:
        by_index.setdefault(group.name, []).append(group)
    total = 0
    for name, members in by_index.items():
        live = set(stub.GetIds(luxdb_pb2.GetIdsRequest(name=name), timeout=CALL_TIMEOUT_S).ids)
        accounted = set()
        vectors = {}
        for group in members:
            for w in group.all_writers():
                accounted |= w.check(live, name)
                vectors.update(w.vectors)
        unknown = live - accounted
        assert not unknown, (
            f"index '{name}': {len(unknown)} ids live that no writer wrote: {sorted(unknown)[:5]}")

        # Every live item's vector is bit-identical to the one sent.
        ordered = sorted(live)
        dim = members[0].dim
        for start in range(0, len(ordered), 5000):
            chunk = ordered[start:start + 5000]
            reply = stub.GetElements(
                luxdb_pb2.GetElementsRequest(name=name, ids=chunk, with_attributes=True),
                timeout=CALL_TIMEOUT_S)
            # Attributes were stored with the vector in one write: every live item has its own.
            assert len(reply.attributes) == len(chunk), (
                f"index '{name}': {len(reply.attributes)} attributes for {len(chunk)} items")
            for i, attributes in zip(chunk, reply.attributes):
                assert attributes_dict(attributes) == expected_attributes(i), (
                    f"index '{name}': item {i} has attributes {attributes_dict(attributes)}, "
                    f"sent {expected_attributes(i)}")
            got = np.array(reply.vectors, dtype=np.float32).reshape(len(chunk), dim)
            want = np.stack([vectors[i] for i in chunk])
            differ = np.flatnonzero(np.any(got.view(np.uint32) != want.view(np.uint32), axis=1))
            assert differ.size == 0, (
                f"index '{name}': {differ.size} vectors differ from what was sent, e.g. id "
                f"{chunk[differ[0]]}: got {got[differ[0]][:4]}..., sent {want[differ[0]][:4]}...")

        # Queries work on the restarted index: a stored vector finds itself.
        if ordered:
            probe = random.Random(7).sample(ordered, min(20, len(ordered)))
            request = luxdb_pb2.QueryIndexRequest(name=name, k=1, ef=200)
            request.vectors.extend(np.stack([vectors[i] for i in probe]).ravel().tolist())
            answer = stub.QueryIndex(request, timeout=CALL_TIMEOUT_S)
            found = sum(1 for want, got in zip(probe, answer.ids) if want == got)
            assert found >= len(probe) - 1, (
                f"index '{name}': only {found} of {len(probe)} stored vectors found themselves "
                f"after restart")
            # A filtered query on the attributes finds the item among those sharing its slot,
            # and nothing outside them.
            for i in probe[:5]:
                request = luxdb_pb2.QueryIndexRequest(name=name, k=3, ef=200)
                request.vectors.extend(vectors[i].tolist())
                request.filter.must.add(key="slot").equals.i = i % ATTRIBUTE_SLOTS
                request.filter.must.add(key="odd").equals.b = i % 2 == 1
                answer = stub.QueryIndex(request, timeout=CALL_TIMEOUT_S)
                got = [x for x in answer.ids if x != 2**64 - 1]
                assert got and got[0] == i, (
                    f"index '{name}': a filtered query for item {i} answered {got}")
                assert all(x % ATTRIBUTE_SLOTS == i % ATTRIBUTE_SLOTS and x % 2 == i % 2
                           for x in got), f"index '{name}': {got} violates the filter of item {i}"
        if settle:
            for group in members:
                group.settle(live)
        total += len(ordered)
    return total
