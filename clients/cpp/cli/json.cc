#include "cli/json.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace luxdb::cli {
namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  absl::StatusOr<JsonValue> ParseDocument() {
    JsonValue value;
    if (absl::Status s = ParseValue(0, &value); !s.ok()) return s;
    SkipSpace();
    if (pos_ != text_.size()) return Error("expected the end of the JSON text");
    return value;
  }

 private:
  absl::Status Error(absl::string_view expected) const {
    if (pos_ >= text_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed JSON: ", expected, ", found the end of the text"));
    }
    return absl::InvalidArgumentError(absl::StrCat("malformed JSON at column ", pos_ + 1, ": ",
                                                   expected, ", found '", text_.substr(pos_, 1),
                                                   "'"));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  absl::Status ParseValue(int depth, JsonValue* out) {
    if (depth > kMaxDepth) return Error(absl::StrCat("at most ", kMaxDepth, " levels of nesting"));
    SkipSpace();
    if (pos_ >= text_.size()) return Error("expected a value");
    const char c = text_[pos_];
    if (c == '{') return ParseObject(depth, out);
    if (c == '[') return ParseArray(depth, out);
    if (c == '"') {
      out->kind = JsonValue::Kind::kString;
      return ParseString(&out->text);
    }
    if (c == '-' || absl::ascii_isdigit(static_cast<unsigned char>(c))) return ParseNumber(out);
    if (Consume("true") || Consume("false")) {
      out->kind = JsonValue::Kind::kBool;
      out->boolean = c == 't';
      return absl::OkStatus();
    }
    if (Consume("null")) {
      out->kind = JsonValue::Kind::kNull;
      return absl::OkStatus();
    }
    return Error("expected a value");
  }

  absl::Status ParseObject(int depth, JsonValue* out) {
    out->kind = JsonValue::Kind::kObject;
    ++pos_;  // {
    SkipSpace();
    if (Consume("}")) return absl::OkStatus();
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Error("expected a key in quotes");
      std::string key;
      const size_t key_start = pos_;
      if (absl::Status s = ParseString(&key); !s.ok()) return s;
      for (const auto& member : out->members) {
        if (member.first == key) {
          return absl::InvalidArgumentError(absl::StrCat("malformed JSON at column ", key_start + 1,
                                                         ": key '", key,
                                                         "' appears twice in one object"));
        }
      }
      SkipSpace();
      if (!Consume(":")) return Error("expected ':'");
      JsonValue value;
      if (absl::Status s = ParseValue(depth + 1, &value); !s.ok()) return s;
      out->members.emplace_back(std::move(key), std::move(value));
      SkipSpace();
      if (Consume("}")) return absl::OkStatus();
      if (!Consume(",")) return Error("expected ',' or '}'");
    }
  }

  absl::Status ParseArray(int depth, JsonValue* out) {
    out->kind = JsonValue::Kind::kArray;
    ++pos_;  // [
    SkipSpace();
    if (Consume("]")) return absl::OkStatus();
    while (true) {
      JsonValue value;
      if (absl::Status s = ParseValue(depth + 1, &value); !s.ok()) return s;
      out->elements.push_back(std::move(value));
      SkipSpace();
      if (Consume("]")) return absl::OkStatus();
      if (!Consume(",")) return Error("expected ',' or ']'");
    }
  }

  absl::Status ParseNumber(JsonValue* out) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_]))) {
        ++pos_;
      }
      return pos_ - from;
    };
    Consume("-");
    if (pos_ < text_.size() && text_[pos_] == '0') {
      ++pos_;  // no leading zeros
    } else if (digits() == 0) {
      return Error("expected a digit");
    }
    if (Consume(".") && digits() == 0) return Error("expected a digit after '.'");
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (!Consume("+")) Consume("-");
      if (digits() == 0) return Error("expected a digit in the exponent");
    }
    out->kind = JsonValue::Kind::kNumber;
    out->text = std::string(text_.substr(start, pos_ - start));
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> Hex4() {
    if (pos_ + 4 > text_.size()) return Error("expected four hex digits after \\u");
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_];
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return Error("expected four hex digits after \\u");
      }
      value = value * 16 + (absl::ascii_isdigit(static_cast<unsigned char>(c))
                                ? c - '0'
                                : absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10);
      ++pos_;
    }
    return value;
  }

  static void AppendUtf8(uint32_t code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (code >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
    }
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // "
    while (true) {
      if (pos_ >= text_.size()) return Error("expected '\"' to end the string");
      const char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return Error("expected '\"' or a character (control characters must be escaped)");
      }
      ++pos_;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return Error("expected an escaped character");
      const char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          absl::StatusOr<uint32_t> code = Hex4();
          if (!code.ok()) return code.status();
          if (*code >= 0xD800 && *code < 0xDC00) {  // a surrogate pair
            if (!Consume("\\u")) return Error("expected the low surrogate of a \\u pair");
            absl::StatusOr<uint32_t> low = Hex4();
            if (!low.ok()) return low.status();
            if (*low < 0xDC00 || *low >= 0xE000) {
              return Error("expected the low surrogate of a \\u pair");
            }
            *code = 0x10000 + ((*code - 0xD800) << 10) + (*low - 0xDC00);
          } else if (*code >= 0xDC00 && *code < 0xE000) {
            return Error("expected a high surrogate before a low one");
          }
          AppendUtf8(*code, out);
          break;
        }
        default:
          --pos_;
          return Error("expected one of \" \\ / b f n r t u after '\\'");
      }
    }
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

bool JsonValue::is_integer() const {
  return kind == Kind::kNumber && text.find_first_of(".eE") == std::string::npos;
}

const char* KindName(JsonValue::Kind kind) {
  switch (kind) {
    case JsonValue::Kind::kNull:
      return "null";
    case JsonValue::Kind::kBool:
      return "a bool";
    case JsonValue::Kind::kNumber:
      return "a number";
    case JsonValue::Kind::kString:
      return "a string";
    case JsonValue::Kind::kArray:
      return "an array";
    case JsonValue::Kind::kObject:
      return "an object";
  }
  return "a value";
}

absl::StatusOr<JsonValue> ParseJson(absl::string_view text) { return Parser(text).ParseDocument(); }

}  // namespace luxdb::cli
