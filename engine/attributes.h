// Item attributes and query filters (issue 17): what they are, how they are checked and stored,
// and AttributeIndex, the in-memory rows and secondary indexes a filtered query reads.
//
// An item may carry named attributes. A value is a string, an int64, a double (finite) or a
// bool; a string or int64 attribute may hold a list of values of its kind, double and bool
// attributes one value. A Filter keeps the items that pass every `must` condition, no
// `must_not` condition, at least one `should` condition when any are given, and whose id is
// among `ids` when that list is not empty. Conditions: equals (int64 and double compare as
// numbers, strings and bools only with their own kind), any_of, range (int64 and double values,
// compared as doubles) and exists. A list matches when one of its values does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace luxdb::engine {

namespace attributes_internal {
struct KeyIndex;
struct Row;
struct Test;
}  // namespace attributes_internal

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

struct Attribute {
  std::string key;
  std::vector<AttributeValue> values;
};
// An item's attributes, keys unique and ascending once checked (CheckAttributes).
using ItemAttributes = std::vector<Attribute>;

// Bounds on one item's attributes (server flags; README "Filtered search").
struct AttributeLimits {
  uint32_t max_keys = 32;            // keys per item
  uint32_t max_key_bytes = 128;      // bytes of one key
  uint32_t max_string_bytes = 1024;  // bytes of one string value
  uint32_t max_values = 64;          // values of one list attribute
};

// Checks the attributes of item `id` of index `index` against the rules above and `limits`,
// and sorts them by key. INVALID_ARGUMENT naming the item, the key and the rule or limit.
absl::Status CheckAttributes(ItemAttributes& attributes, const AttributeLimits& limits,
                             absl::string_view index, uint64_t id);

// The stored form of checked attributes (empty for none), and back. Decode returns DATA_LOSS
// for bytes Encode did not write.
std::string EncodeAttributes(const ItemAttributes& attributes);
absl::StatusOr<ItemAttributes> DecodeAttributes(std::string_view bytes);

struct Condition {
  enum class Test { kEquals, kAnyOf, kRange, kExists };
  std::string key;
  Test test = Test::kExists;
  std::vector<AttributeValue> values{};  // kEquals: one; kAnyOf: any number
  // kRange: at least one bound.
  std::optional<double> gt{}, gte{}, lt{}, lte{};
  bool exists = true;  // kExists: true: has the key; false: has not
};

struct Filter {
  std::vector<Condition> must{};
  std::vector<Condition> must_not{};
  std::vector<Condition> should{};
  std::vector<uint64_t> ids{};  // empty: any id
};

// At most this many conditions in one filter, values in one any_of, ids in one filter.
inline constexpr size_t kMaxFilterConditions = 256;
inline constexpr size_t kMaxAnyOfValues = 1024;
inline constexpr size_t kMaxFilterIds = 1'000'000;

// A byte string that identifies a filter (the same conditions in the same order).
std::string FilterKey(const Filter& filter);

// Checks a filter's shape: keys set, a range with a bound and no NaN, limits above.
// INVALID_ARGUMENT naming the condition, e.g. "filter.must[1] ('price'): a range needs a bound".
absl::Status CheckFilter(const Filter& filter);

// Every item's attributes, keyed by id, and per key the ids holding each value: a hash set per
// string, int64 and bool value, ordered maps for the ranges of int64 and double values.
// Thread-compatible: Index guards it with a reader-writer lock.
class AttributeIndex {
 public:
  // A filter compiled against this index's keys: what Matches and Plan take. Stays valid while
  // the index changes (keys, once seen, keep their number); a key unknown when it was compiled
  // matches nothing.
  struct Compiled;

  AttributeIndex();
  ~AttributeIndex();
  AttributeIndex(AttributeIndex&&) noexcept;
  AttributeIndex& operator=(AttributeIndex&&) noexcept;

  // Replaces item `id`'s attributes (checked ones; empty removes them).
  void Set(uint64_t id, const ItemAttributes& attributes);
  void Remove(uint64_t id) { Set(id, {}); }
  // Item `id`'s attributes, keys ascending (empty if it has none).
  ItemAttributes Get(uint64_t id) const;
  size_t items() const { return rows_.size(); }
  // The ids of the items that have attributes, in no order.
  std::vector<uint64_t> ids() const;
  // Keys any item ever held: a filter compiled while this was N treats keys added since as
  // unknown, so a cached compiled filter is valid while it stays N.
  size_t key_count() const { return keys_.size(); }

  // `filter` must have passed CheckFilter.
  std::shared_ptr<const Compiled> Compile(const Filter& filter) const;
  bool Matches(const Compiled& filter, uint64_t id) const;

  // The ids that can match, when the secondary indexes bound them to at most `limit`: the
  // smallest of the id list, a `must` condition's holders, or the union of the `should`
  // conditions' holders, each checked with Matches (so every id returned matches), ascending.
  // nullopt when no such bound is at most `limit` (the filter may match many items).
  std::optional<std::vector<uint64_t>> Candidates(const Compiled& filter, size_t limit) const;

 private:
  using KeyIndex = attributes_internal::KeyIndex;
  using Row = attributes_internal::Row;
  using Test = attributes_internal::Test;
  bool Passes(const Test& test, const Row* row) const;
  // How many ids hold a value that passes `test` (a must or should condition), counted up to
  // limit + 1; nullopt when the test cannot be bounded this way (exists: false).
  std::optional<size_t> CountUpTo(const Test& test, size_t limit) const;
  // Appends the ids holding a value that passes `test` (possibly repeated).
  void Collect(const Test& test, std::vector<uint64_t>& out) const;

  absl::flat_hash_map<std::string, uint32_t> key_numbers_;
  std::vector<std::unique_ptr<KeyIndex>> keys_;  // by key number
  absl::flat_hash_map<uint64_t, std::unique_ptr<Row>> rows_;
};

}  // namespace luxdb::engine
