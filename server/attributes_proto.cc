#include "server/attributes_proto.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace luxdb::server {
namespace {

std::optional<engine::AttributeValue> FromProto(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kS:
      return value.s();
    case v1::Value::kI:
      return value.i();
    case v1::Value::kD:
      return value.d();
    case v1::Value::kB:
      return value.b();
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return std::nullopt;
}

void ToProto(const engine::AttributeValue& value, v1::Value* out) {
  switch (value.index()) {
    case 0:
      out->set_s(std::get<std::string>(value));
      break;
    case 1:
      out->set_i(std::get<int64_t>(value));
      break;
    case 2:
      out->set_d(std::get<double>(value));
      break;
    default:
      out->set_b(std::get<bool>(value));
  }
}

absl::StatusOr<std::vector<engine::Condition>> ConditionsFromProto(
    absl::string_view part, const google::protobuf::RepeatedPtrField<v1::Condition>& conditions) {
  std::vector<engine::Condition> out;
  out.reserve(conditions.size());
  for (int i = 0; i < conditions.size(); ++i) {
    const v1::Condition& c = conditions[i];
    const std::string where = absl::StrCat("filter.", part, "[", i, "] ('", c.key(), "')");
    engine::Condition& condition = out.emplace_back();
    condition.key = c.key();
    auto value = [&](const v1::Value& v, absl::string_view what) -> absl::Status {
      std::optional<engine::AttributeValue> converted = FromProto(v);
      if (!converted) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ", what, " holds a Value with no ", "kind set (s, i, d or b)"));
      }
      condition.values.push_back(*std::move(converted));
      return absl::OkStatus();
    };
    switch (c.test_case()) {
      case v1::Condition::kEquals:
        condition.test = engine::Condition::Test::kEquals;
        if (absl::Status s = value(c.equals(), "equals"); !s.ok()) return s;
        break;
      case v1::Condition::kAnyOf:
        condition.test = engine::Condition::Test::kAnyOf;
        if (c.any_of().values_size() > static_cast<int>(engine::kMaxAnyOfValues)) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ": any_of has ", c.any_of().values_size(), " values; at most ",
                           engine::kMaxAnyOfValues, " are allowed"));
        }
        for (int j = 0; j < c.any_of().values_size(); ++j) {
          if (absl::Status s = value(c.any_of().values(j), absl::StrCat("any_of[", j, "]"));
              !s.ok()) {
            return s;
          }
        }
        break;
      case v1::Condition::kRange:
        condition.test = engine::Condition::Test::kRange;
        if (c.range().has_gt()) condition.gt = c.range().gt();
        if (c.range().has_gte()) condition.gte = c.range().gte();
        if (c.range().has_lt()) condition.lt = c.range().lt();
        if (c.range().has_lte()) condition.lte = c.range().lte();
        break;
      case v1::Condition::kExists:
        condition.test = engine::Condition::Test::kExists;
        condition.exists = c.exists();
        break;
      case v1::Condition::TEST_NOT_SET:
        if (c.key().empty()) break;  // the engine names the empty key first
        return absl::InvalidArgumentError(
            absl::StrCat(where, " has no test: set one of equals, any_of, range or exists"));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<engine::ItemAttributes>> AttributesFromProto(
    const google::protobuf::RepeatedPtrField<v1::Attributes>& attributes,
    const google::protobuf::RepeatedField<uint64_t>& ids, absl::string_view index) {
  std::vector<engine::ItemAttributes> out;
  out.reserve(attributes.size());
  for (int i = 0; i < attributes.size(); ++i) {
    engine::ItemAttributes& item = out.emplace_back();
    item.reserve(attributes[i].attributes_size());
    for (const v1::Attribute& a : attributes[i].attributes()) {
      engine::Attribute& attribute = item.emplace_back();
      attribute.key = a.key();
      attribute.values.reserve(a.values_size());
      for (int j = 0; j < a.values_size(); ++j) {
        std::optional<engine::AttributeValue> value = FromProto(a.values(j));
        if (!value) {
          return absl::InvalidArgumentError(absl::StrCat(
              "item ", i < ids.size() ? absl::StrCat(ids[i]) : absl::StrCat("#", i), " of index '",
              index, "': attribute '", a.key(), "' value ", j, " has no kind set (s, i, d or b)"));
        }
        attribute.values.push_back(*std::move(value));
      }
    }
  }
  return out;
}

void AttributesToProto(const engine::ItemAttributes& attributes, v1::Attributes* out) {
  for (const engine::Attribute& a : attributes) {
    v1::Attribute* attribute = out->add_attributes();
    attribute->set_key(a.key);
    for (const engine::AttributeValue& v : a.values) ToProto(v, attribute->add_values());
  }
}

absl::StatusOr<engine::Filter> FilterFromProto(const v1::Filter& filter) {
  const size_t conditions =
      static_cast<size_t>(filter.must_size()) + filter.must_not_size() + filter.should_size();
  if (conditions > engine::kMaxFilterConditions) {
    return absl::InvalidArgumentError(absl::StrCat("the filter has ", conditions,
                                                   " conditions; at most ",
                                                   engine::kMaxFilterConditions, " are allowed"));
  }
  engine::Filter out;
  for (auto [part, list, target] : {std::tuple{"must", &filter.must(), &out.must},
                                    std::tuple{"must_not", &filter.must_not(), &out.must_not},
                                    std::tuple{"should", &filter.should(), &out.should}}) {
    absl::StatusOr<std::vector<engine::Condition>> converted = ConditionsFromProto(part, *list);
    if (!converted.ok()) return converted.status();
    *target = *std::move(converted);
  }
  out.ids.assign(filter.ids().begin(), filter.ids().end());
  if (absl::Status s = engine::CheckFilter(out); !s.ok()) return s;
  return out;
}

}  // namespace luxdb::server
