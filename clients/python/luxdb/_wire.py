"""Protobuf wire encoding of LuxDB's bulk fields, straight from and to numpy arrays.

Building a protobuf message from millions of floats goes through one Python object per float
(seconds for 10,000 x 784); encoding the packed field from the array's bytes takes
milliseconds. A request is its small fields serialised by the generated message class followed
by these packed fields: protobuf parsers merge concatenated encodings, so the server sees one
message. Responses are scanned field by field and their packed fields viewed as arrays.
"""

import numpy as np

_WIRE_VARINT = 0
_WIRE_FIXED64 = 1
_WIRE_LENGTH = 2
_WIRE_FIXED32 = 5
_SEVEN = np.uint64(7)
_LOW_BITS = np.uint64(0x7F)
_VARINT_LIMITS = [np.uint64(1 << (7 * j)) for j in range(1, 10)]


class MalformedResponse(ValueError):
    """The bytes are not a protobuf message of the expected shape."""


def varint(value):
    """The varint encoding of a non-negative int."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _header(field_number, size):
    return varint(field_number << 3 | _WIRE_LENGTH) + varint(size)


def packed_floats(field_number, array):
    """A packed `repeated float` field holding every element of `array` (row-major), as a
    list of buffers for request()."""
    floats = np.ascontiguousarray(array, dtype="<f4").reshape(-1)
    payload = memoryview(floats).cast("B") if floats.size else b""
    return [_header(field_number, len(payload)), payload]


def varints(values):
    """The varint encodings of a uint64 array, concatenated (numpy, no per-value Python)."""
    values = np.ascontiguousarray(values, dtype=np.uint64).ravel()
    if values.size == 0:
        return b""
    sizes = np.ones(values.size, dtype=np.int64)
    for limit in _VARINT_LIMITS:
        sizes += values >= limit
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    rest = values.copy()
    for j in range(int(sizes.max())):
        live = np.flatnonzero(sizes > j)
        byte = (rest[live] & _LOW_BITS).astype(np.uint8)
        byte[sizes[live] > j + 1] |= 0x80
        out[starts[live] + j] = byte
        rest >>= _SEVEN
    return out.tobytes()


def message_field(field_number, payload):
    """A field holding an embedded message's serialised bytes, as a list of buffers for
    request()."""
    return [_header(field_number, len(payload)), payload]


def packed_uint64s(field_number, array):
    """A packed `repeated uint64` field holding every element of `array`, as a list of
    buffers for request()."""
    payload = varints(array)
    return [_header(field_number, len(payload)), payload]


def request(message, *packed_fields):
    """The bytes of `message` (a protobuf message holding the small fields) with the packed
    fields appended: one copy of the bulk data."""
    return b"".join([message.SerializeToString()] + [part for field in packed_fields
                                                      for part in field])


def _read_varint(data, pos):
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise MalformedResponse("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def scan(data):
    """{field number: [(wire type, value), ...]} of a message's top-level fields: varints as
    ints, everything else as memoryviews of `data`."""
    view = memoryview(data)
    fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        wire_type = key & 7
        if wire_type == _WIRE_VARINT:
            value, pos = _read_varint(data, pos)
        else:
            if wire_type == _WIRE_LENGTH:
                size, pos = _read_varint(data, pos)
            elif wire_type in (_WIRE_FIXED32, _WIRE_FIXED64):
                size = 4 if wire_type == _WIRE_FIXED32 else 8
            else:
                raise MalformedResponse(f"unsupported wire type {wire_type}")
            if pos + size > len(data):
                raise MalformedResponse("truncated field")
            value = view[pos:pos + size]
            pos += size
        fields.setdefault(key >> 3, []).append((wire_type, value))
    return fields


# Up to this many bytes of varints (a k=10 answer is at most 100) a Python loop decodes faster
# than numpy's fixed cost per operation.
_SMALL_VARINTS = 256


def _decode_few_varints(payload):
    data = bytes(payload)
    values = []
    pos = 0
    while pos < len(data):
        value, pos = _read_varint(data, pos)
        if value >> 64:
            raise MalformedResponse("varint above 2**64 - 1")
        values.append(value)
    return np.array(values, dtype=np.uint64)


def decode_varints(payload):
    """uint64 array of the concatenated varints in `payload` (numpy, no per-value Python
    beyond a few hundred bytes)."""
    if len(payload) <= _SMALL_VARINTS:
        return _decode_few_varints(payload)
    data = np.frombuffer(payload, dtype=np.uint8)
    ends = np.flatnonzero(data < 0x80)
    if data.size and (ends.size == 0 or ends[-1] != data.size - 1):
        raise MalformedResponse("truncated varint")
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    sizes = ends - starts + 1
    values = np.zeros(ends.size, dtype=np.uint64)
    for j in range(int(sizes.max()) if sizes.size else 0):
        live = np.flatnonzero(sizes > j)
        values[live] |= (data[starts[live] + j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return values


def uint64_field(fields, field_number):
    """A `repeated uint64` field as a uint64 array (packed or not, in order)."""
    parts = []
    for wire_type, value in fields.get(field_number, ()):
        if wire_type == _WIRE_LENGTH:
            parts.append(decode_varints(value))
        elif wire_type == _WIRE_VARINT:
            parts.append(np.array([value], dtype=np.uint64))
        else:
            raise MalformedResponse(f"field {field_number} has wire type {wire_type}")
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def float_field(fields, field_number):
    """A `repeated float` field as a (writable, native) float32 array."""
    parts = []
    for wire_type, value in fields.get(field_number, ()):
        if wire_type not in (_WIRE_LENGTH, _WIRE_FIXED32) or len(value) % 4:
            raise MalformedResponse(f"field {field_number} is not a float field")
        parts.append(np.frombuffer(value, dtype="<f4"))
    if not parts:
        return np.empty(0, dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=len(parts) == 1)


def int_field(fields, field_number, default=0):
    """A singular varint field (its last occurrence wins, as protobuf parsers do)."""
    values = [v for wire_type, v in fields.get(field_number, ()) if wire_type == _WIRE_VARINT]
    return values[-1] if values else default
