"""Item attributes and query filters, between their Python form and the wire (luxdb.proto's
Attributes and Filter).

An item's attributes are a dict of non-empty str keys to a bool, an int (int64), a float
(finite), a str, or a list of str or of int; they come back the same way, except that a list
of one value comes back as that value (the wire does not tell them apart).

A filter is a dict {"must": [...], "must_not": [...], "should": [...], "ids": [...]} (each
part optional) of conditions {"key": k, <test>: ...}, the test being one of "equals": value,
"any_of": [values], "range": {"gt"/"gte"/"lt"/"lte": number, ...} or "exists": bool.

The client refuses here only what it cannot put on the wire (a value of another type, an
unknown dict key, a wrong count), naming it; the server checks the rest (empty keys, limits,
a range without a bound, NaN) and names it in an INVALID_ARGUMENT, e.g. "filter.must[1]
('price')". Errors are InvalidArgumentError with code INVALID_ARGUMENT, as the server's.
"""

from collections.abc import Mapping

import grpc
import numpy as np

from luxdb import _wire
from luxdb.exceptions import InvalidArgumentError
from luxdb.v1 import luxdb_pb2 as pb

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_SEQUENCES = (list, tuple)
_FILTER_PARTS = ("must", "must_not", "should", "ids")
_TESTS = ("equals", "any_of", "range", "exists")
_BOUNDS = ("gt", "gte", "lt", "lte")
_VALUE_KINDS = "a bool, an int, a float or a str"
_ATTRIBUTE_KINDS = f"{_VALUE_KINDS}, or a list of str or of int"


def _invalid(message, name):
    return InvalidArgumentError(message, code=grpc.StatusCode.INVALID_ARGUMENT, name=name)


def _value(value):
    """`value` as a pb.Value, or None if it is of no kind a Value holds. A bool is tested
    before int, which it is a subclass of; numpy scalars count as their Python kind."""
    if isinstance(value, (bool, np.bool_)):
        return pb.Value(b=bool(value))
    if isinstance(value, (int, np.integer)):
        number = int(value)
        return pb.Value(i=number) if _INT64_MIN <= number <= _INT64_MAX else None
    if isinstance(value, (float, np.floating)):
        return pb.Value(d=float(value))
    if isinstance(value, str):
        return pb.Value(s=value)
    return None


def _list_values(values):
    """pb.Values of a non-empty list of str, or of int (no bools), or None."""
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else None
    if not values:
        return None
    if all(isinstance(v, str) for v in values):
        return [pb.Value(s=v) for v in values]
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
           and _INT64_MIN <= int(v) <= _INT64_MAX for v in values):
        return [pb.Value(i=int(v)) for v in values]
    return None


def _item_attributes(attributes, where, name):
    """One item's attributes (a Mapping) as a pb.Attributes; `where` names the item."""
    if not isinstance(attributes, Mapping):
        raise _invalid(f"{where} for index '{name}' must be a dict of attribute values, got "
                       f"{type(attributes).__name__} {attributes!r}", name)
    message = pb.Attributes()
    for key, value in attributes.items():
        if not isinstance(key, str):
            raise _invalid(f"{where} for index '{name}': key {key!r} is of type "
                           f"{type(key).__name__}; keys are str", name)
        if isinstance(value, (*_SEQUENCES, np.ndarray)):
            values = _list_values(value)
        else:
            single = _value(value)
            values = None if single is None else [single]
        if values is None:
            raise _invalid(f"{where} for index '{name}': key '{key}' holds "
                           f"{value!r} ({type(value).__name__}); an attribute value is "
                           f"{_ATTRIBUTE_KINDS} (ints within int64, lists not empty)", name)
        message.attributes.add(key=key, values=values)
    return message


def attributes_messages(attributes, ids, name):
    """The pb.Attributes of each id of `ids` (a uint64 array): `attributes` is a sequence of
    one dict per id, or one dict when there is one id."""
    if isinstance(attributes, Mapping):
        attributes = [attributes]
    elif isinstance(attributes, (str, bytes)) or not hasattr(attributes, "__iter__"):
        raise _invalid(f"attributes for index '{name}' must be a list of one dict per id, got "
                       f"{type(attributes).__name__} {attributes!r}", name)
    else:
        attributes = list(attributes)
    if len(attributes) != ids.size:
        raise _invalid(f"{ids.size} ids but {len(attributes)} attributes for index '{name}'; "
                       f"give one dict per id ({{}} for none)", name)
    return [_item_attributes(item, f"attributes[{i}] (id {int(ids[i])})", name)
            for i, item in enumerate(attributes)]


def _python_value(value):
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


def attributes_dict(message):
    """A pb.Attributes as {key: value, or list of values when it holds several}."""
    out = {}
    for attribute in message.attributes:
        values = [_python_value(v) for v in attribute.values]
        out[attribute.key] = values[0] if len(values) == 1 else values
    return out


def _condition(condition, where, name):
    """A condition dict as a pb.Condition; `where` names it, as the server does."""
    if not isinstance(condition, Mapping):
        raise _invalid(f"{where} of the filter for index '{name}' must be a dict "
                       f"{{'key': ..., <test>: ...}}, got {type(condition).__name__} "
                       f"{condition!r}", name)
    key = condition.get("key")
    where = f"{where} ({key!r})"
    unknown = [k for k in condition if k != "key" and k not in _TESTS]
    if unknown:
        raise _invalid(f"{where} of the filter for index '{name}': unknown field(s) "
                       f"{', '.join(map(repr, unknown))}; a condition has 'key' and one of "
                       f"{', '.join(map(repr, _TESTS))}", name)
    tests = [t for t in _TESTS if t in condition]
    if len(tests) > 1:
        raise _invalid(f"{where} of the filter for index '{name}' has "
                       f"{' and '.join(map(repr, tests))}; give one test per condition", name)
    if not isinstance(key, str):
        raise _invalid(f"{where} of the filter for index '{name}' needs a str 'key'", name)
    message = pb.Condition(key=key)
    if not tests:
        return message  # the server names a condition without a test
    test = tests[0]
    argument = condition[test]
    if test == "equals":
        value = _value(argument)
        if value is None:
            raise _invalid(f"{where} of the filter for index '{name}': equals "
                           f"{argument!r} ({type(argument).__name__}); it takes {_VALUE_KINDS} "
                           f"(any_of takes a list)", name)
        message.equals.CopyFrom(value)
    elif test == "any_of":
        if isinstance(argument, np.ndarray):
            argument = argument.tolist()
        values = [_value(v) for v in argument] \
            if isinstance(argument, (*_SEQUENCES, set, frozenset)) else [None]
        if any(v is None for v in values):
            raise _invalid(f"{where} of the filter for index '{name}': any_of {argument!r}; it "
                           f"takes a list of values, each {_VALUE_KINDS}", name)
        message.any_of.values.extend(values)
    elif test == "range":
        bounds = argument if isinstance(argument, Mapping) else {None: argument}
        for bound, number in bounds.items():
            if bound not in _BOUNDS or isinstance(number, (bool, np.bool_)) \
                    or not isinstance(number, (int, float, np.integer, np.floating)):
                raise _invalid(f"{where} of the filter for index '{name}': range {argument!r}; "
                               f"it takes a dict of numbers under "
                               f"{', '.join(map(repr, _BOUNDS))}", name)
            setattr(message.range, bound, float(number))
        message.range.SetInParent()  # present even without bounds: the server refuses it
    else:
        if not isinstance(argument, (bool, np.bool_)):
            raise _invalid(f"{where} of the filter for index '{name}': exists "
                           f"{argument!r}; it takes True or False", name)
        message.exists = bool(argument)
    return message


def filter_bytes(query_filter, name, as_ids):
    """The serialised pb.Filter of a filter dict (as_ids(ids, name) reads its "ids", packed
    as _wire does, so a long id list costs no Python object per id)."""
    if not isinstance(query_filter, Mapping):
        raise _invalid(f"the filter for index '{name}' must be a dict with "
                       f"{', '.join(map(repr, _FILTER_PARTS))}, got "
                       f"{type(query_filter).__name__} {query_filter!r}", name)
    unknown = [k for k in query_filter if k not in _FILTER_PARTS]
    if unknown:
        raise _invalid(f"the filter for index '{name}' has unknown field(s) "
                       f"{', '.join(map(repr, unknown))}; it takes "
                       f"{', '.join(map(repr, _FILTER_PARTS))}", name)
    message = pb.Filter()
    for part in _FILTER_PARTS[:3]:
        conditions = query_filter.get(part, ())
        if not isinstance(conditions, _SEQUENCES):
            raise _invalid(f"filter.{part} for index '{name}' must be a list of conditions, "
                           f"got {type(conditions).__name__} {conditions!r}", name)
        getattr(message, part).extend(
            _condition(c, f"filter.{part}[{j}]", name) for j, c in enumerate(conditions))
    ids = query_filter.get("ids")
    packed = [] if ids is None else [_wire.packed_uint64s(4, as_ids(ids, name))]
    return _wire.request(message, *packed)
