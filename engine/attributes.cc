#include "engine/attributes.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace luxdb::engine {
namespace attributes_internal {

// One key's secondary indexes: who holds it, and who holds each value.
struct KeyIndex {
  std::string name;
  absl::flat_hash_set<uint64_t> holders;
  absl::flat_hash_map<std::string, absl::flat_hash_set<uint64_t>> strings;
  absl::btree_map<int64_t, absl::flat_hash_set<uint64_t>> ints;
  absl::btree_map<double, absl::flat_hash_set<uint64_t>> doubles;
  absl::flat_hash_set<uint64_t> bools[2];
};

// One item's attributes, by key number (ascending).
struct Row {
  std::vector<std::pair<uint32_t, std::vector<AttributeValue>>> attributes;
};

// A condition with its key resolved: kUnknownKey when no item had the key when compiled.
struct Test {
  static constexpr uint32_t kUnknownKey = std::numeric_limits<uint32_t>::max();
  uint32_t key = kUnknownKey;
  Condition::Test kind = Condition::Test::kExists;
  std::vector<AttributeValue> values;
  double low = -std::numeric_limits<double>::infinity();
  double high = std::numeric_limits<double>::infinity();
  bool low_open = false, high_open = false;
  bool exists = true;
};

}  // namespace attributes_internal

using attributes_internal::KeyIndex;
using attributes_internal::Row;
using attributes_internal::Test;

struct AttributeIndex::Compiled {
  std::vector<Test> must, must_not, should;
  std::vector<uint64_t> ids;  // ascending, unique
};

namespace {

absl::string_view KindName(const AttributeValue& value) {
  switch (value.index()) {
    case 0:
      return "string";
    case 1:
      return "int";
    case 2:
      return "double";
    default:
      return "bool";
  }
}

// An int64 equal to `d`, if d is a whole number in int64's range.
std::optional<int64_t> WholeNumber(double d) {
  if (!(d == std::trunc(d)) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) {
    return std::nullopt;
  }
  return static_cast<int64_t>(d);
}

bool ValueEquals(const AttributeValue& a, const AttributeValue& b) {
  if (a.index() == b.index()) return a == b;
  if (const int64_t* i = std::get_if<int64_t>(&a); i != nullptr) {
    if (const double* d = std::get_if<double>(&b); d != nullptr) return WholeNumber(*d) == *i;
  }
  if (const double* d = std::get_if<double>(&a); d != nullptr) {
    if (const int64_t* i = std::get_if<int64_t>(&b); i != nullptr) return WholeNumber(*d) == *i;
  }
  return false;
}

bool InRange(const Test& test, double x) {
  if (test.low_open ? !(x > test.low) : !(x >= test.low)) return false;
  if (test.high_open ? !(x < test.high) : !(x <= test.high)) return false;
  return true;
}

// Byte coding of stored attributes: varint counts and lengths, fixed 8-byte numbers.
void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool GetVarint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

void PutString(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

bool GetString(std::string_view& in, std::string& s) {
  uint64_t size = 0;
  if (!GetVarint(in, size) || size > in.size()) return false;
  s.assign(in.substr(0, size));
  in.remove_prefix(size);
  return true;
}

template <typename T>
void PutFixed(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <typename T>
bool GetFixed(std::string_view& in, T& v) {
  if (in.size() < sizeof(v)) return false;
  std::memcpy(&v, in.data(), sizeof(v));
  in.remove_prefix(sizeof(v));
  return true;
}

std::string Where(absl::string_view part, size_t i, const Condition& c) {
  return absl::StrCat("filter.", part, "[", i, "] ('", c.key, "')");
}

absl::Status CheckCondition(absl::string_view part, size_t i, const Condition& c) {
  if (c.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("filter.", part, "[", i, "] has an empty key"));
  }
  auto check_value = [&](const AttributeValue& v) -> absl::Status {
    if (const double* d = std::get_if<double>(&v); d != nullptr && std::isnan(*d)) {
      return absl::InvalidArgumentError(absl::StrCat(Where(part, i, c), ": NaN is not a value"));
    }
    return absl::OkStatus();
  };
  switch (c.test) {
    case Condition::Test::kEquals:
      if (c.values.size() != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(part, i, c), ": equals needs exactly one value"));
      }
      return check_value(c.values[0]);
    case Condition::Test::kAnyOf:
      if (c.values.size() > kMaxAnyOfValues) {
        return absl::InvalidArgumentError(absl::StrCat(Where(part, i, c), ": any_of has ",
                                                       c.values.size(), " values; at most ",
                                                       kMaxAnyOfValues, " are allowed"));
      }
      for (const AttributeValue& v : c.values) {
        if (absl::Status s = check_value(v); !s.ok()) return s;
      }
      return absl::OkStatus();
    case Condition::Test::kRange:
      if (!c.gt && !c.gte && !c.lt && !c.lte) {
        return absl::InvalidArgumentError(absl::StrCat(
            Where(part, i, c), ": a range needs at least one bound (gt, gte, lt, lte)"));
      }
      for (const std::optional<double>& b : {c.gt, c.gte, c.lt, c.lte}) {
        if (b && std::isnan(*b)) {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(part, i, c), ": a range bound is NaN"));
        }
      }
      return absl::OkStatus();
    case Condition::Test::kExists:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckAttributes(ItemAttributes& attributes, const AttributeLimits& limits,
                             absl::string_view index, uint64_t id) {
  auto refuse = [&](absl::string_view key, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("item ", id, " of index '", index,
                     "': ", key.empty() ? "" : absl::StrCat("attribute '", key, "' "), what));
  };
  if (attributes.size() > limits.max_keys) {
    return refuse("", absl::StrCat("has ", attributes.size(), " attributes; the limit is ",
                                   limits.max_keys, " (--max-attribute-keys)"));
  }
  for (const Attribute& a : attributes) {
    if (a.key.empty()) return refuse("", "has an attribute with an empty key");
    if (a.key.size() > limits.max_key_bytes) {
      return refuse(a.key.substr(0, 32),
                    absl::StrCat("has a key of ", a.key.size(), " bytes; the limit is ",
                                 limits.max_key_bytes, " (--max-attribute-key-bytes)"));
    }
    if (a.values.empty()) return refuse(a.key, "has no value");
    if (a.values.size() > limits.max_values) {
      return refuse(a.key, absl::StrCat("holds ", a.values.size(), " values; the limit is ",
                                        limits.max_values, " (--max-attribute-values)"));
    }
    const size_t kind = a.values[0].index();
    if (a.values.size() > 1 && kind != 0 && kind != 1) {
      return refuse(a.key, absl::StrCat("holds ", a.values.size(), " ", KindName(a.values[0]),
                                        " values; only string and int attributes may hold lists"));
    }
    for (const AttributeValue& v : a.values) {
      if (v.index() != kind) {
        return refuse(a.key, absl::StrCat("mixes ", KindName(a.values[0]), " and ", KindName(v),
                                          " values; a list holds values of one kind"));
      }
      if (const std::string* s = std::get_if<std::string>(&v);
          s != nullptr && s->size() > limits.max_string_bytes) {
        return refuse(a.key,
                      absl::StrCat("has a string of ", s->size(), " bytes; the limit is ",
                                   limits.max_string_bytes, " (--max-attribute-string-bytes)"));
      }
      if (const double* d = std::get_if<double>(&v); d != nullptr && !std::isfinite(*d)) {
        return refuse(a.key, absl::StrCat("is ", *d, "; double values must be finite"));
      }
    }
  }
  std::sort(attributes.begin(), attributes.end(),
            [](const Attribute& a, const Attribute& b) { return a.key < b.key; });
  for (size_t i = 1; i < attributes.size(); ++i) {
    if (attributes[i].key == attributes[i - 1].key) {
      return refuse(attributes[i].key, "appears twice");
    }
  }
  return absl::OkStatus();
}

std::string EncodeAttributes(const ItemAttributes& attributes) {
  std::string out;
  if (attributes.empty()) return out;
  PutVarint(out, attributes.size());
  for (const Attribute& a : attributes) {
    PutString(out, a.key);
    PutVarint(out, a.values.size());
    for (const AttributeValue& v : a.values) {
      out.push_back(static_cast<char>(v.index()));
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::string>) {
              PutString(out, x);
            } else if constexpr (std::is_same_v<T, bool>) {
              out.push_back(x ? 1 : 0);
            } else {
              PutFixed(out, x);
            }
          },
          v);
    }
  }
  return out;
}

absl::StatusOr<ItemAttributes> DecodeAttributes(std::string_view bytes) {
  ItemAttributes attributes;
  if (bytes.empty()) return attributes;
  const size_t total = bytes.size();
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("stored attributes (", total, " bytes) are invalid: ",
                                            what, " at byte ", total - bytes.size()));
  };
  uint64_t count = 0;
  if (!GetVarint(bytes, count) || count > bytes.size()) return bad("bad attribute count");
  attributes.resize(count);
  for (Attribute& a : attributes) {
    uint64_t n = 0;
    if (!GetString(bytes, a.key) || !GetVarint(bytes, n) || n > bytes.size()) {
      return bad("truncated key");
    }
    a.values.resize(n);
    for (AttributeValue& v : a.values) {
      if (bytes.empty()) return bad("truncated value");
      const char kind = bytes.front();
      bytes.remove_prefix(1);
      bool ok = false;
      if (kind == 0) {
        std::string s;
        ok = GetString(bytes, s);
        v = std::move(s);
      } else if (kind == 1) {
        int64_t i = 0;
        ok = GetFixed(bytes, i);
        v = i;
      } else if (kind == 2) {
        double d = 0;
        ok = GetFixed(bytes, d);
        v = d;
      } else if (kind == 3) {
        ok = !bytes.empty() && static_cast<uint8_t>(bytes.front()) <= 1;
        if (ok) v = bytes.front() == 1;
        if (ok) bytes.remove_prefix(1);
      }
      if (!ok) return bad("bad value");
    }
  }
  if (!bytes.empty()) return bad("trailing bytes");
  return attributes;
}

std::string FilterKey(const Filter& filter) {
  std::string key;
  for (const std::vector<Condition>* part : {&filter.must, &filter.must_not, &filter.should}) {
    PutVarint(key, part->size());
    for (const Condition& c : *part) {
      PutString(key, c.key);
      key.push_back(static_cast<char>(c.test));
      key.push_back(static_cast<char>(c.exists));
      for (const std::optional<double>& b : {c.gt, c.gte, c.lt, c.lte}) {
        key.push_back(static_cast<char>(b.has_value()));
        if (b) PutFixed(key, *b);
      }
      PutString(key, EncodeAttributes({{"", c.values}}));
    }
  }
  PutVarint(key, filter.ids.size());
  for (uint64_t id : filter.ids) PutFixed(key, id);
  return key;
}

absl::Status CheckFilter(const Filter& filter) {
  const size_t conditions = filter.must.size() + filter.must_not.size() + filter.should.size();
  if (conditions > kMaxFilterConditions) {
    return absl::InvalidArgumentError(absl::StrCat("the filter has ", conditions,
                                                   " conditions; at most ", kMaxFilterConditions,
                                                   " are allowed"));
  }
  if (filter.ids.size() > kMaxFilterIds) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the filter lists ", filter.ids.size(), " ids; at most ", kMaxFilterIds, " are allowed"));
  }
  for (auto [part, list] :
       {std::pair{"must", &filter.must}, std::pair{"must_not", &filter.must_not},
        std::pair{"should", &filter.should}}) {
    for (size_t i = 0; i < list->size(); ++i) {
      if (absl::Status s = CheckCondition(part, i, (*list)[i]); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

AttributeIndex::AttributeIndex() = default;
AttributeIndex::~AttributeIndex() = default;
AttributeIndex::AttributeIndex(AttributeIndex&&) noexcept = default;
AttributeIndex& AttributeIndex::operator=(AttributeIndex&&) noexcept = default;

void AttributeIndex::Set(uint64_t id, const ItemAttributes& attributes) {
  if (auto it = rows_.find(id); it != rows_.end()) {
    for (const auto& [number, values] : it->second->attributes) {
      KeyIndex& key = *keys_[number];
      key.holders.erase(id);
      for (const AttributeValue& v : values) {
        auto drop = [id](auto& map, const auto& value) {
          auto found = map.find(value);
          if (found == map.end()) return;
          found->second.erase(id);
          if (found->second.empty()) map.erase(found);
        };
        switch (v.index()) {
          case 0:
            drop(key.strings, std::get<std::string>(v));
            break;
          case 1:
            drop(key.ints, std::get<int64_t>(v));
            break;
          case 2:
            drop(key.doubles, std::get<double>(v));
            break;
          default:
            key.bools[std::get<bool>(v) ? 1 : 0].erase(id);
        }
      }
    }
    rows_.erase(it);
  }
  if (attributes.empty()) return;
  auto row = std::make_unique<Row>();
  row->attributes.reserve(attributes.size());
  for (const Attribute& a : attributes) {
    auto [found, inserted] = key_numbers_.try_emplace(a.key, static_cast<uint32_t>(keys_.size()));
    if (inserted) {
      keys_.push_back(std::make_unique<KeyIndex>());
      keys_.back()->name = a.key;
    }
    const uint32_t number = found->second;
    KeyIndex& key = *keys_[number];
    key.holders.insert(id);
    for (const AttributeValue& v : a.values) {
      switch (v.index()) {
        case 0:
          key.strings[std::get<std::string>(v)].insert(id);
          break;
        case 1:
          key.ints[std::get<int64_t>(v)].insert(id);
          break;
        case 2:
          key.doubles[std::get<double>(v)].insert(id);
          break;
        default:
          key.bools[std::get<bool>(v) ? 1 : 0].insert(id);
      }
    }
    row->attributes.emplace_back(number, a.values);
  }
  std::sort(row->attributes.begin(), row->attributes.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  rows_.emplace(id, std::move(row));
}

std::vector<uint64_t> AttributeIndex::ids() const {
  std::vector<uint64_t> out;
  out.reserve(rows_.size());
  for (const auto& [id, row] : rows_) out.push_back(id);
  return out;
}

ItemAttributes AttributeIndex::Get(uint64_t id) const {
  ItemAttributes attributes;
  auto it = rows_.find(id);
  if (it == rows_.end()) return attributes;
  for (const auto& [number, values] : it->second->attributes) {
    attributes.push_back({keys_[number]->name, values});
  }
  std::sort(attributes.begin(), attributes.end(),
            [](const Attribute& a, const Attribute& b) { return a.key < b.key; });
  return attributes;
}

std::shared_ptr<const AttributeIndex::Compiled> AttributeIndex::Compile(
    const Filter& filter) const {
  auto compiled = std::make_shared<Compiled>();
  auto compile = [&](const std::vector<Condition>& conditions, std::vector<Test>& out) {
    for (const Condition& c : conditions) {
      Test& t = out.emplace_back();
      if (auto it = key_numbers_.find(c.key); it != key_numbers_.end()) t.key = it->second;
      t.kind = c.test;
      t.values = c.values;
      t.exists = c.exists;
      // The tightest of each side's bounds: gt 3 with gte 3 is gt 3.
      auto lower = [&](double b, bool open) {
        if (b > t.low || (b == t.low && open)) t.low = b, t.low_open = open;
      };
      auto upper = [&](double b, bool open) {
        if (b < t.high || (b == t.high && open)) t.high = b, t.high_open = open;
      };
      if (c.gt) lower(*c.gt, true);
      if (c.gte) lower(*c.gte, false);
      if (c.lt) upper(*c.lt, true);
      if (c.lte) upper(*c.lte, false);
    }
  };
  compile(filter.must, compiled->must);
  compile(filter.must_not, compiled->must_not);
  compile(filter.should, compiled->should);
  compiled->ids = filter.ids;
  std::sort(compiled->ids.begin(), compiled->ids.end());
  compiled->ids.erase(std::unique(compiled->ids.begin(), compiled->ids.end()), compiled->ids.end());
  return compiled;
}

bool AttributeIndex::Passes(const Test& test, const Row* row) const {
  const std::vector<AttributeValue>* values = nullptr;
  if (row != nullptr && test.key != Test::kUnknownKey) {
    auto it = std::lower_bound(row->attributes.begin(), row->attributes.end(), test.key,
                               [](const auto& a, uint32_t key) { return a.first < key; });
    if (it != row->attributes.end() && it->first == test.key) values = &it->second;
  }
  if (test.kind == Condition::Test::kExists) return (values != nullptr) == test.exists;
  if (values == nullptr) return false;
  for (const AttributeValue& v : *values) {
    switch (test.kind) {
      case Condition::Test::kEquals:
      case Condition::Test::kAnyOf:
        for (const AttributeValue& wanted : test.values) {
          if (ValueEquals(v, wanted)) return true;
        }
        break;
      case Condition::Test::kRange:
        if (const int64_t* i = std::get_if<int64_t>(&v); i != nullptr) {
          if (InRange(test, static_cast<double>(*i))) return true;
        } else if (const double* d = std::get_if<double>(&v); d != nullptr) {
          if (InRange(test, *d)) return true;
        }
        break;
      case Condition::Test::kExists:
        break;
    }
  }
  return false;
}

bool AttributeIndex::Matches(const Compiled& filter, uint64_t id) const {
  if (!filter.ids.empty() && !std::binary_search(filter.ids.begin(), filter.ids.end(), id)) {
    return false;
  }
  const Row* row = nullptr;
  if (auto it = rows_.find(id); it != rows_.end()) row = it->second.get();
  for (const Test& t : filter.must) {
    if (!Passes(t, row)) return false;
  }
  for (const Test& t : filter.must_not) {
    if (Passes(t, row)) return false;
  }
  if (filter.should.empty()) return true;
  for (const Test& t : filter.should) {
    if (Passes(t, row)) return true;
  }
  return false;
}

namespace {

// Calls fn(set) for every value set of `key` that a test selects; fn returns false to stop.
template <typename Fn>
void ForEachValueSet(const KeyIndex& key, const Test& test, Fn&& fn) {
  auto equal_sets = [&](const AttributeValue& v) -> bool {
    switch (v.index()) {
      case 0:
        if (auto it = key.strings.find(std::get<std::string>(v)); it != key.strings.end()) {
          return fn(it->second);
        }
        return true;
      case 3:
        return fn(key.bools[std::get<bool>(v) ? 1 : 0]);
      default: {
        // Numbers: int64 and double values equal as numbers.
        std::optional<int64_t> as_int;
        std::optional<double> as_double;
        if (const int64_t* i = std::get_if<int64_t>(&v); i != nullptr) {
          as_int = *i;
          const double d = static_cast<double>(*i);
          if (WholeNumber(d) == *i) as_double = d;
        } else {
          as_double = std::get<double>(v);
          as_int = WholeNumber(*as_double);
        }
        if (as_int) {
          if (auto it = key.ints.find(*as_int); it != key.ints.end() && !fn(it->second)) {
            return false;
          }
        }
        if (as_double) {
          if (auto it = key.doubles.find(*as_double); it != key.doubles.end()) {
            return fn(it->second);
          }
        }
        return true;
      }
    }
  };
  switch (test.kind) {
    case Condition::Test::kEquals:
    case Condition::Test::kAnyOf:
      for (const AttributeValue& v : test.values) {
        if (!equal_sets(v)) return;
      }
      return;
    case Condition::Test::kRange: {
      // From the first int64 that may be in range (bounds compare as doubles, as in Passes):
      // an int64 beyond 2^53 converts to a double up to 512 away, so start 1,024 below the
      // bound, and at the smallest int64 when that is below every int64 (INT64_MIN is -2^63,
      // beyond -9.2e18).
      const double start = std::floor(test.low) - 1024;
      auto first = start < -9.2e18
                       ? key.ints.begin()
                       : key.ints.lower_bound(static_cast<int64_t>(std::min(start, 9.2e18)));
      for (auto it = first; it != key.ints.end(); ++it) {
        const double x = static_cast<double>(it->first);
        if (x > test.high) break;
        if (InRange(test, x) && !fn(it->second)) return;
      }
      for (auto it = key.doubles.lower_bound(test.low); it != key.doubles.end(); ++it) {
        if (it->first > test.high) break;
        if (InRange(test, it->first) && !fn(it->second)) return;
      }
      return;
    }
    case Condition::Test::kExists:
      if (test.exists) fn(key.holders);
      return;
  }
}

}  // namespace

std::optional<size_t> AttributeIndex::CountUpTo(const Test& test, size_t limit) const {
  if (test.kind == Condition::Test::kExists && !test.exists) return std::nullopt;
  if (test.key == Test::kUnknownKey) return 0;
  size_t count = 0;
  ForEachValueSet(*keys_[test.key], test, [&](const absl::flat_hash_set<uint64_t>& set) {
    count += set.size();
    return count <= limit;
  });
  return count;
}

void AttributeIndex::Collect(const Test& test, std::vector<uint64_t>& out) const {
  if (test.key == Test::kUnknownKey) return;
  ForEachValueSet(*keys_[test.key], test, [&](const absl::flat_hash_set<uint64_t>& set) {
    out.insert(out.end(), set.begin(), set.end());
    return true;
  });
}

std::optional<std::vector<uint64_t>> AttributeIndex::Candidates(const Compiled& filter,
                                                                size_t limit) const {
  // The smallest source that bounds the matches: 0 the id list, 1 a must test, 2 the shoulds.
  int source = -1;
  size_t best = limit + 1;
  const Test* best_must = nullptr;
  if (!filter.ids.empty() && filter.ids.size() < best) {
    source = 0;
    best = filter.ids.size();
  }
  for (const Test& t : filter.must) {
    const std::optional<size_t> count = CountUpTo(t, std::min(best, limit));
    if (count && *count < best) {
      source = 1;
      best = *count;
      best_must = &t;
      if (best == 0) break;
    }
  }
  if (!filter.should.empty() && best > 0) {
    size_t sum = 0;
    bool bounded = true;
    for (const Test& t : filter.should) {
      const std::optional<size_t> count = CountUpTo(t, best);
      if (!count) {
        bounded = false;
        break;
      }
      sum += *count;
      if (sum >= best) break;
    }
    if (bounded && sum < best) {
      source = 2;
      best = sum;
    }
  }
  if (source < 0) return std::nullopt;
  std::vector<uint64_t> ids;
  if (source == 0) {
    ids = filter.ids;
  } else if (source == 1) {
    Collect(*best_must, ids);
  } else {
    for (const Test& t : filter.should) Collect(t, ids);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ids.erase(
      std::remove_if(ids.begin(), ids.end(), [&](uint64_t id) { return !Matches(filter, id); }),
      ids.end());
  return ids;
}

}  // namespace luxdb::engine
