// Conversions between the wire's attributes and filters (luxdb.v1.Attributes, Filter) and the
// engine's (engine/attributes.h). Shape errors a protobuf message can carry but the engine's
// types cannot (a value or a test that is not set) are INVALID_ARGUMENT here, naming the item
// or the condition; everything else is the engine's to check.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/attributes.h"
#include "luxdb/v1/luxdb.pb.h"

namespace luxdb::server {

// One engine::ItemAttributes per entry of `attributes`; `index` and `ids` name the items in
// errors.
absl::StatusOr<std::vector<engine::ItemAttributes>> AttributesFromProto(
    const google::protobuf::RepeatedPtrField<v1::Attributes>& attributes,
    const google::protobuf::RepeatedField<uint64_t>& ids, absl::string_view index);

void AttributesToProto(const engine::ItemAttributes& attributes, v1::Attributes* out);

absl::StatusOr<engine::Filter> FilterFromProto(const v1::Filter& filter);

}  // namespace luxdb::server
