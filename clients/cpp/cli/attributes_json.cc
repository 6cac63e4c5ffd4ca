#include "cli/attributes_json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"

namespace luxdb::cli {
namespace {

using Kind = JsonValue::Kind;

absl::Status Invalid(absl::string_view where, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", problem));
}

// A JSON string, bool or number as an AttributeValue (whole numbers int64, others double).
absl::StatusOr<AttributeValue> ScalarValue(const JsonValue& json, absl::string_view where) {
  switch (json.kind) {
    case Kind::kString:
      return AttributeValue(json.text);
    case Kind::kBool:
      return AttributeValue(json.boolean);
    case Kind::kNumber:
      if (json.is_integer()) {
        int64_t i = 0;
        if (!absl::SimpleAtoi(json.text, &i)) {
          return Invalid(where, absl::StrCat(json.text, " is out of the int64 range"));
        }
        return AttributeValue(i);
      } else {
        double d = 0;
        if (!absl::SimpleAtod(json.text, &d) || !std::isfinite(d)) {
          return Invalid(where, absl::StrCat(json.text, " is out of the double range"));
        }
        return AttributeValue(d);
      }
    default:
      return Invalid(where, absl::StrCat("a value is a string, a number or a bool, not ",
                                         KindName(json.kind)));
  }
}

// The fields of `object` that are not among `known`, or OK.
absl::Status OnlyFields(const JsonValue& object, const std::vector<absl::string_view>& known,
                        absl::string_view where) {
  for (const auto& [name, value] : object.members) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return Invalid(where, absl::StrCat("unknown field '", name, "' (the fields are ",
                                         absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Condition> ConditionFromJson(const JsonValue& json, const std::string& at) {
  if (json.kind != Kind::kObject) {
    return Invalid(at, absl::StrCat("a condition is an object, not ", KindName(json.kind)));
  }
  const JsonValue* key = nullptr;
  const std::pair<std::string, JsonValue>* test = nullptr;
  for (const auto& member : json.members) {
    if (member.first == "key") {
      key = &member.second;
    } else if (member.first == "equals" || member.first == "any_of" || member.first == "range" ||
               member.first == "exists") {
      if (test != nullptr) {
        return Invalid(at, absl::StrCat("one test per condition, got '", test->first, "' and '",
                                        member.first, "'"));
      }
      test = &member;
    }
  }
  if (absl::Status s = OnlyFields(json, {"key", "equals", "any_of", "range", "exists"}, at);
      !s.ok()) {
    return s;
  }
  if (key == nullptr || key->kind != Kind::kString || key->text.empty()) {
    return Invalid(at, "a condition needs \"key\": a non-empty string");
  }
  const std::string where = absl::StrCat(at, " ('", key->text, "')");
  if (test == nullptr) {
    return Invalid(where, "a condition needs one test: equals, any_of, range or exists");
  }
  const JsonValue& value = test->second;
  if (test->first == "equals") {
    absl::StatusOr<AttributeValue> v = ScalarValue(value, absl::StrCat(where, ": equals"));
    if (!v.ok()) return v.status();
    return Equals(key->text, *std::move(v));
  }
  if (test->first == "any_of") {
    if (value.kind != Kind::kArray) {
      return Invalid(where, absl::StrCat("any_of takes an array, not ", KindName(value.kind)));
    }
    std::vector<AttributeValue> values;
    for (size_t i = 0; i < value.elements.size(); ++i) {
      absl::StatusOr<AttributeValue> v =
          ScalarValue(value.elements[i], absl::StrCat(where, ": any_of[", i, "]"));
      if (!v.ok()) return v.status();
      values.push_back(*std::move(v));
    }
    return AnyOf(key->text, std::move(values));
  }
  if (test->first == "exists") {
    if (value.kind != Kind::kBool) {
      return Invalid(where, absl::StrCat("exists takes true or false, not ", KindName(value.kind)));
    }
    return value.boolean ? Exists(key->text) : Missing(key->text);
  }
  // range
  if (value.kind != Kind::kObject) {
    return Invalid(where, absl::StrCat("range takes an object of bounds gt, gte, lt, lte, not ",
                                       KindName(value.kind)));
  }
  if (absl::Status s =
          OnlyFields(value, {"gt", "gte", "lt", "lte"}, absl::StrCat(where, ": range"));
      !s.ok()) {
    return s;
  }
  if (value.members.empty()) return Invalid(where, "range needs a bound: gt, gte, lt or lte");
  RangeCondition range(key->text);
  for (const auto& [bound, number] : value.members) {
    double d = 0;
    if (number.kind != Kind::kNumber || !absl::SimpleAtod(number.text, &d) || !std::isfinite(d)) {
      return Invalid(where, absl::StrCat("range bound '", bound, "' must be a finite number"));
    }
    if (bound == "gt") range.Gt(d);
    if (bound == "gte") range.Gte(d);
    if (bound == "lt") range.Lt(d);
    if (bound == "lte") range.Lte(d);
  }
  return Condition(range);
}

std::string DoubleText(double value) {
  char text[32];
  const std::to_chars_result result = std::to_chars(text, text + sizeof(text), value);
  std::string out(text, result.ptr);
  if (out.find_first_of(".e") == std::string::npos) out += ".0";
  return out;
}

std::string ValueJson(const AttributeValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return JsonString(v);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return absl::StrCat(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return DoubleText(v);
        } else {
          return v ? "true" : "false";
        }
      },
      value);
}

}  // namespace

absl::StatusOr<Attributes> AttributesFromJson(const JsonValue& object) {
  if (object.kind != Kind::kObject) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a JSON object of attributes but ", KindName(object.kind)));
  }
  Attributes attributes;
  attributes.reserve(object.members.size());
  for (const auto& [key, json] : object.members) {
    const std::string where = absl::StrCat("key '", key, "'");
    Attribute& attribute = attributes.emplace_back();
    attribute.key = key;
    if (json.kind != Kind::kArray) {
      absl::StatusOr<AttributeValue> value = ScalarValue(json, where);
      if (!value.ok()) return value.status();
      attribute.values.push_back(*std::move(value));
      continue;
    }
    if (json.elements.empty()) {
      return Invalid(where, "an empty array (leave the key out for no value)");
    }
    for (size_t i = 0; i < json.elements.size(); ++i) {
      const JsonValue& element = json.elements[i];
      const bool same_kind = element.kind == json.elements[0].kind &&
                             element.is_integer() == json.elements[0].is_integer();
      if (!(element.kind == Kind::kString || element.is_integer()) || !same_kind) {
        return Invalid(where,
                       absl::StrCat("an array holds strings or whole numbers, all of one kind; "
                                    "element ",
                                    i, " is ",
                                    element.kind == Kind::kNumber && !element.is_integer()
                                        ? "a number with a fraction or exponent"
                                        : KindName(element.kind)));
      }
      absl::StatusOr<AttributeValue> value = ScalarValue(element, where);
      if (!value.ok()) return value.status();
      attribute.values.push_back(*std::move(value));
    }
  }
  return attributes;
}

absl::StatusOr<Filter> FilterFromJson(absl::string_view text) {
  absl::StatusOr<JsonValue> json = ParseJson(text);
  if (!json.ok()) return json.status();
  if (json->kind != Kind::kObject) {
    return absl::InvalidArgumentError(
        absl::StrCat("a filter is a JSON object with must, must_not, should and ids, not ",
                     KindName(json->kind)));
  }
  if (absl::Status s = OnlyFields(*json, {"must", "must_not", "should", "ids"}, "filter");
      !s.ok()) {
    return s;
  }
  Filter filter;
  for (const auto& [part, value] : json->members) {
    const std::string at = absl::StrCat("filter.", part);
    if (value.kind != Kind::kArray) {
      return Invalid(at, absl::StrCat("an array, not ", KindName(value.kind)));
    }
    if (part == "ids") {
      std::vector<uint64_t> ids;
      ids.reserve(value.elements.size());
      for (size_t i = 0; i < value.elements.size(); ++i) {
        uint64_t id = 0;
        if (!value.elements[i].is_integer() || value.elements[i].text[0] == '-' ||
            !absl::SimpleAtoi(value.elements[i].text, &id)) {
          return Invalid(absl::StrCat(at, "[", i, "]"), "an id is a whole number from 0 to 2^64-1");
        }
        ids.push_back(id);
      }
      filter.Ids(std::move(ids));
      continue;
    }
    for (size_t i = 0; i < value.elements.size(); ++i) {
      absl::StatusOr<Condition> condition =
          ConditionFromJson(value.elements[i], absl::StrCat(at, "[", i, "]"));
      if (!condition.ok()) return condition.status();
      if (part == "must") filter.Must(*std::move(condition));
      if (part == "must_not") filter.MustNot(*std::move(condition));
      if (part == "should") filter.Should(*std::move(condition));
    }
  }
  return filter;
}

std::string AttributesJson(const Attributes& attributes) {
  std::string out = "{";
  for (size_t i = 0; i < attributes.size(); ++i) {
    const Attribute& attribute = attributes[i];
    absl::StrAppend(&out, i == 0 ? "" : ", ", JsonString(attribute.key), ": ");
    if (attribute.values.size() == 1) {
      out += ValueJson(attribute.values[0]);
      continue;
    }
    out += "[";
    for (size_t j = 0; j < attribute.values.size(); ++j) {
      absl::StrAppend(&out, j == 0 ? "" : ", ", ValueJson(attribute.values[j]));
    }
    out += "]";
  }
  out += "}";
  return out;
}

size_t AttributesWireBytes(const Attributes& attributes) {
  size_t bytes = 4;
  for (const Attribute& attribute : attributes) {
    bytes += attribute.key.size() + 6;
    for (const AttributeValue& value : attribute.values) {
      const auto* s = std::get_if<std::string>(&value);
      bytes += (s != nullptr ? s->size() : 0) + 12;
    }
  }
  return bytes;
}

}  // namespace luxdb::cli
