#include "gateway/config/yaml_proto.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace knooppunt::config {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::OneofDescriptor;
using google::protobuf::Reflection;

// Upper bound on the number of YAML nodes visited: max(kNodesPerByte * input size,
// kMinNodeBudget). Without aliases a document cannot have more nodes than bytes, so this only
// limits alias expansion, which can otherwise be exponential ("billion laughs"), to a linear
// amount of work and memory.
constexpr size_t kNodesPerByte = 4;
constexpr size_t kMinNodeBudget = size_t{1} << 16;

// google.protobuf.Timestamp range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;
// google.protobuf.Duration range: +-10000 years.
constexpr int64_t kMaxDurationSeconds = 315576000000;

std::string FormatError(const SourceLocation& loc, absl::string_view path,
                        absl::string_view message) {
  if (path.empty()) return absl::StrCat(loc.ToString(), ": ", message);
  return absl::StrCat(loc.ToString(), ": ", path, ": ", message);
}

// Start offsets of every path component after the first ('.' or '['), so that path[0, b)
// for each boundary b is an ancestor. Quoted map keys may contain '.', '[' and escaped '"'.
std::vector<size_t> ComponentBoundaries(absl::string_view path) {
  std::vector<size_t> boundaries;
  size_t i = 0;
  while (i < path.size()) {
    const char c = path[i];
    if (c == '.') {
      if (i > 0) boundaries.push_back(i);
      ++i;
    } else if (c == '[') {
      if (i > 0) boundaries.push_back(i);
      ++i;
      if (i < path.size() && path[i] == '"') {
        ++i;
        while (i < path.size() && path[i] != '"') i += (path[i] == '\\') ? 2 : 1;
        ++i;  // closing quote
      }
      while (i < path.size() && path[i] != ']') ++i;
      ++i;  // closing bracket
    } else {
      ++i;
    }
  }
  return boundaries;
}

std::string QuoteForMessage(absl::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

// Optional sign followed by one or more ASCII digits, nothing else.
bool IsDecimalInteger(absl::string_view s) {
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
  if (s.empty()) return false;
  for (const char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

const char* NodeKind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a sequence";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

bool IsTimestamp(const Descriptor* d) {
  return d->full_name() == google::protobuf::Timestamp::descriptor()->full_name();
}
bool IsDuration(const Descriptor* d) {
  return d->full_name() == google::protobuf::Duration::descriptor()->full_name();
}

bool IsRejectedEnumValue(const EnumValueDescriptor* v) {
  return v->number() == 0 && absl::EndsWith(v->name(), "UNSPECIFIED");
}

// Longest common prefix of all value names, cut back to just after its last '_'.
std::string EnumPrefix(const EnumDescriptor* e) {
  if (e->value_count() == 0) return "";
  absl::string_view prefix = e->value(0)->name();
  for (int i = 1; i < e->value_count(); ++i) {
    absl::string_view name = e->value(i)->name();
    size_t n = 0;
    while (n < prefix.size() && n < name.size() && prefix[n] == name[n]) ++n;
    prefix = prefix.substr(0, n);
  }
  const size_t underscore = prefix.rfind('_');
  if (underscore == absl::string_view::npos) return "";
  return std::string(prefix.substr(0, underscore + 1));
}

std::string EnumShortName(const EnumValueDescriptor* v, absl::string_view prefix) {
  absl::string_view name = v->name();
  if (name.size() > prefix.size() && absl::StartsWith(name, prefix)) {
    name.remove_prefix(prefix.size());
  }
  return absl::AsciiStrToLower(name);
}

bool ParseTimestampText(absl::string_view s, absl::Time* t) {
  // Insist on a 4-digit year, 2-digit month and day: absl's %Y/%m/%d are more lenient, and
  // this also rules out absl's "infinite-future"/"infinite-past".
  if (s.size() < 10) return false;
  for (size_t i = 0; i < 10; ++i) {
    const bool want_dash = (i == 4 || i == 7);
    if (want_dash ? s[i] != '-' : !absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  std::string err;
  if (s.size() == 10) return absl::ParseTime("%Y-%m-%d", s, absl::UTCTimeZone(), t, &err);
  if (s[10] != 'T' && s[10] != 't') return false;
  return absl::ParseTime(absl::RFC3339_full, s, t, &err);
}

// absl::ParseDuration syntax, optionally preceded by whole days: "5d", "1d12h", "-2d".
bool ParseDurationText(absl::string_view s, absl::Duration* d) {
  const size_t dpos = s.find('d');
  if (dpos == absl::string_view::npos) return absl::ParseDuration(s, d);
  absl::string_view days_text = s.substr(0, dpos);
  absl::string_view rest = s.substr(dpos + 1);
  bool negative = false;
  if (!days_text.empty() && (days_text[0] == '-' || days_text[0] == '+')) {
    negative = days_text[0] == '-';
    days_text.remove_prefix(1);
  }
  if (days_text.empty() || days_text.size() > 9) return false;
  for (const char c : days_text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  int64_t days = 0;
  if (!absl::SimpleAtoi(days_text, &days)) return false;
  absl::Duration total = absl::Hours(24) * days;
  if (!rest.empty()) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(rest[0])) && rest[0] != '.') return false;
    absl::Duration extra;
    if (!absl::ParseDuration(rest, &extra)) return false;
    total += extra;
  }
  *d = negative ? -total : total;
  return true;
}

// A converted scalar; which member is meaningful depends on the field's cpp_type.
struct ScalarValue {
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  bool b = false;
  std::string s;
  const EnumValueDescriptor* e = nullptr;

  // Canonical text, used to detect duplicate map keys ("1" and "+01" are the same int key).
  std::string Canonical(const FieldDescriptor* field) const {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64:
        return absl::StrCat(i);
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64:
        return absl::StrCat(u);
      case FieldDescriptor::CPPTYPE_BOOL:
        return b ? "true" : "false";
      default:
        return s;
    }
  }
};

class Converter {
 public:
  Converter(std::string file, SourceMap* map, size_t max_nodes)
      : file_(std::move(file)), map_(map), max_nodes_(max_nodes) {}

  absl::Status ParseDocuments(const std::vector<YAML::Node>& docs, Message* msg) {
    if (docs.size() > 1) {
      return Fail(Loc(docs[1], Start()), "",
                  absl::StrCat("expected a single YAML document, found ", docs.size()));
    }
    if (docs.empty() || docs[0].IsNull()) {
      map_->Record("", Start());
      return absl::OkStatus();
    }
    const YAML::Node& root = docs[0];
    const SourceLocation root_loc = Loc(root, Start());
    if (!root.IsMap()) {
      return Fail(root_loc, "",
                  absl::StrCat("expected a mapping (message ", msg->GetDescriptor()->full_name(),
                               ") at the top level, got ", NodeKind(root)));
    }
    absl::Status status = ParseMessage(root, root_loc, "", 1, msg);
    if (!status.ok()) return status;
    if (!msg->IsInitialized()) {
      return Fail(root_loc, "",
                  absl::StrCat("missing required fields: ", msg->InitializationErrorString()));
    }
    return absl::OkStatus();
  }

 private:
  SourceLocation Start() const { return SourceLocation{file_, 1, 1}; }

  // Location of a node. Null nodes carry the mark of the token after them, so they (and nodes
  // without a mark) get the fallback, normally the location of their key.
  SourceLocation Loc(const YAML::Node& node, const SourceLocation& fallback) const {
    const YAML::Mark mark = node.Mark();
    if (node.IsNull() || mark.is_null() || mark.line < 0 || mark.column < 0) return fallback;
    return SourceLocation{file_, mark.line + 1, mark.column + 1};
  }

  absl::Status Fail(const SourceLocation& loc, absl::string_view path,
                    absl::string_view message) const {
    return absl::InvalidArgumentError(FormatError(loc, path, message));
  }

  absl::Status TooLarge(const SourceLocation& loc, absl::string_view path) const {
    return Fail(loc, path,
                absl::StrCat("document too large: more than ", max_nodes_,
                             " nodes after expanding aliases"));
  }

  // Counts a visited node and, for a collection, checks its nesting depth.
  absl::Status Visit(const YAML::Node& node, const SourceLocation& loc, absl::string_view path,
                     int depth) {
    if (++visited_ > max_nodes_) return TooLarge(loc, path);
    if ((node.IsMap() || node.IsSequence()) && depth > kMaxYamlDepth) {
      return Fail(loc, path, absl::StrCat("nesting deeper than ", kMaxYamlDepth, " levels"));
    }
    return absl::OkStatus();
  }

  // node: a YAML mapping (or null) for a message at `depth`; record_loc: where the message is
  // recorded (its key, or the node itself for list elements and the root).
  absl::Status ParseMessage(const YAML::Node& node, const SourceLocation& record_loc,
                            const std::string& path, int depth, Message* msg) {
    const SourceLocation node_loc = Loc(node, record_loc);
    if (absl::Status s = Visit(node, node_loc, path, depth); !s.ok()) return s;
    const Descriptor* desc = msg->GetDescriptor();
    if (node.IsNull()) {
      map_->Record(path, record_loc);
      return absl::OkStatus();
    }
    if (!node.IsMap()) {
      return Fail(node_loc, path,
                  absl::StrCat("expected a mapping (message ", desc->full_name(), "), got ",
                               NodeKind(node)));
    }
    map_->Record(path, record_loc);
    const Reflection* refl = msg->GetReflection();
    absl::flat_hash_map<std::string, SourceLocation> seen;
    for (const auto& pair : node) {
      // Copies: yaml-cpp's iterator values are temporaries (Node copies are cheap handles).
      const YAML::Node key = pair.first;
      const YAML::Node value = pair.second;
      const SourceLocation key_loc = Loc(key, node_loc);
      if (++visited_ > max_nodes_) return TooLarge(key_loc, path);
      if (!key.IsScalar()) {
        return Fail(key_loc, path,
                    absl::StrCat("keys must be field names, got ", NodeKind(key), " as key"));
      }
      const std::string& name = key.Scalar();
      const std::string field_path = JoinFieldPath(path, name);
      auto [seen_it, inserted] = seen.try_emplace(name, key_loc);
      if (!inserted) {
        return Fail(key_loc, field_path,
                    absl::StrCat("duplicate key ", QuoteForMessage(name), " (first given at line ",
                                 seen_it->second.line, ", column ", seen_it->second.column,
                                 ")"));
      }
      const FieldDescriptor* field = desc->FindFieldByName(name);
      if (field == nullptr) {
        std::vector<std::string> allowed;
        allowed.reserve(desc->field_count());
        for (int i = 0; i < desc->field_count(); ++i) allowed.push_back(desc->field(i)->name());
        return Fail(key_loc, field_path,
                    absl::StrCat("unknown key ", QuoteForMessage(name), " in ", desc->full_name(),
                                 "; allowed keys: ",
                                 allowed.empty() ? "(none)" : absl::StrJoin(allowed, ", ")));
      }
      if (const OneofDescriptor* oneof = field->real_containing_oneof(); oneof != nullptr) {
        if (const FieldDescriptor* other = refl->GetOneofFieldDescriptor(*msg, oneof);
            other != nullptr) {
          return Fail(key_loc, field_path,
                      absl::StrCat("\"", field->name(), "\" conflicts with \"", other->name(),
                                   "\": both are in oneof \"", oneof->name(),
                                   "\"; give only one"));
        }
      }
      absl::Status s = ParseField(value, key_loc, field_path, depth + 1, field, msg);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status ParseField(const YAML::Node& value, const SourceLocation& key_loc,
                          const std::string& path, int depth, const FieldDescriptor* field,
                          Message* msg) {
    if (field->is_map()) return ParseMapField(value, key_loc, path, depth, field, msg);
    if (field->is_repeated()) return ParseRepeatedField(value, key_loc, path, depth, field, msg);
    return ParseValue(value, key_loc, path, depth, field, msg, /*add=*/false);
  }

  absl::Status ParseRepeatedField(const YAML::Node& value, const SourceLocation& key_loc,
                                  const std::string& path, int depth,
                                  const FieldDescriptor* field, Message* msg) {
    const SourceLocation value_loc = Loc(value, key_loc);
    if (absl::Status s = Visit(value, value_loc, path, depth); !s.ok()) return s;
    map_->Record(path, key_loc);
    if (value.IsNull()) return absl::OkStatus();
    if (!value.IsSequence()) {
      return Fail(value_loc, path,
                  absl::StrCat("expected a sequence (repeated ", TypeName(field), "), got ",
                               NodeKind(value)));
    }
    int index = 0;
    for (const auto& item : value) {
      const YAML::Node element = item;
      const SourceLocation element_loc = Loc(element, value_loc);
      absl::Status s = ParseValue(element, element_loc, JoinIndexPath(path, index++), depth + 1,
                                  field, msg, /*add=*/true);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status ParseMapField(const YAML::Node& value, const SourceLocation& key_loc,
                             const std::string& path, int depth, const FieldDescriptor* field,
                             Message* msg) {
    const Descriptor* entry_desc = field->message_type();
    const FieldDescriptor* key_field = entry_desc->map_key();
    const FieldDescriptor* value_field = entry_desc->map_value();
    const SourceLocation value_loc = Loc(value, key_loc);
    if (absl::Status s = Visit(value, value_loc, path, depth); !s.ok()) return s;
    map_->Record(path, key_loc);
    if (value.IsNull()) return absl::OkStatus();
    if (!value.IsMap()) {
      return Fail(value_loc, path,
                  absl::StrCat("expected a mapping (map<", TypeName(key_field), ", ",
                               TypeName(value_field), ">), got ", NodeKind(value)));
    }
    const Reflection* refl = msg->GetReflection();
    absl::flat_hash_map<std::string, SourceLocation> seen;
    for (const auto& pair : value) {
      const YAML::Node key = pair.first;
      const YAML::Node entry_value = pair.second;
      const SourceLocation entry_key_loc = Loc(key, value_loc);
      if (++visited_ > max_nodes_) return TooLarge(entry_key_loc, path);
      if (!key.IsScalar()) {
        return Fail(entry_key_loc, path,
                    absl::StrCat("map keys must be scalars (", TypeName(key_field), "), got ",
                                 NodeKind(key)));
      }
      const std::string& key_text = key.Scalar();
      const std::string entry_path = JoinKeyPath(path, key_text);
      ScalarValue key_value;
      if (std::string error; !ConvertScalar(key_field, key_text, &key_value, &error)) {
        return Fail(entry_key_loc, entry_path, absl::StrCat("invalid map key: ", error));
      }
      auto [seen_it, inserted] = seen.try_emplace(key_value.Canonical(key_field), entry_key_loc);
      if (!inserted) {
        return Fail(entry_key_loc, entry_path,
                    absl::StrCat("duplicate key ", QuoteForMessage(key_text),
                                 " (first given at line ", seen_it->second.line, ", column ",
                                 seen_it->second.column, ")"));
      }
      Message* entry = refl->AddMessage(msg, field);
      SetScalar(entry, key_field, key_value, /*add=*/false);
      absl::Status s = ParseValue(entry_value, entry_key_loc, entry_path, depth + 1, value_field,
                                  entry, /*add=*/false);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // One value of a (possibly repeated) field: sets it, or adds it when `add`.
  // record_loc: the key for a field value, the element itself for a list element.
  absl::Status ParseValue(const YAML::Node& node, const SourceLocation& record_loc,
                          const std::string& path, int depth, const FieldDescriptor* field,
                          Message* msg, bool add) {
    const Reflection* refl = msg->GetReflection();
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      const Descriptor* type = field->message_type();
      if (IsTimestamp(type) || IsDuration(type)) {
        std::string text;
        SourceLocation value_loc;
        if (absl::Status s = ScalarText(node, record_loc, path, depth, field, &text, &value_loc);
            !s.ok()) {
          return s;
        }
        Message* sub = add ? refl->AddMessage(msg, field) : refl->MutableMessage(msg, field);
        absl::Status s = IsTimestamp(type) ? SetTimestamp(text, value_loc, path, sub)
                                           : SetDuration(text, value_loc, path, sub);
        if (!s.ok()) return s;
        map_->Record(path, value_loc);
        return absl::OkStatus();
      }
      Message* sub = add ? refl->AddMessage(msg, field) : refl->MutableMessage(msg, field);
      return ParseMessage(node, record_loc, path, depth, sub);
    }
    std::string text;
    SourceLocation value_loc;
    if (absl::Status s = ScalarText(node, record_loc, path, depth, field, &text, &value_loc);
        !s.ok()) {
      return s;
    }
    ScalarValue value;
    if (std::string error; !ConvertScalar(field, text, &value, &error)) {
      return Fail(value_loc, path, error);
    }
    SetScalar(msg, field, value, add);
    map_->Record(path, value_loc);
    return absl::OkStatus();
  }

  // The text of a scalar node, or an error for null and collections.
  absl::Status ScalarText(const YAML::Node& node, const SourceLocation& record_loc,
                          const std::string& path, int depth, const FieldDescriptor* field,
                          std::string* text, SourceLocation* value_loc) {
    *value_loc = Loc(node, record_loc);
    if (absl::Status s = Visit(node, *value_loc, path, depth); !s.ok()) return s;
    if (!node.IsScalar()) {
      return Fail(*value_loc, path,
                  absl::StrCat("expected a scalar (", TypeName(field), "), got ", NodeKind(node)));
    }
    *text = node.Scalar();
    return absl::OkStatus();
  }

  static std::string TypeName(const FieldDescriptor* field) {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return field->message_type()->full_name();
      case FieldDescriptor::CPPTYPE_ENUM:
        return absl::StrCat("enum ", field->enum_type()->full_name());
      default:
        return field->type_name();
    }
  }

  bool ConvertScalar(const FieldDescriptor* field, const std::string& text, ScalarValue* out,
                     std::string* error) {
    const char* type = field->type_name();
    auto invalid = [&](absl::string_view expected) {
      *error = absl::StrCat("invalid ", type, " value ", QuoteForMessage(text), ": expected ",
                            expected);
      return false;
    };
    auto out_of_range = [&]() {
      *error = absl::StrCat("value ", QuoteForMessage(text), " is out of range for ", type);
      return false;
    };
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
      case FieldDescriptor::CPPTYPE_INT64: {
        if (!IsDecimalInteger(text)) return invalid("a decimal integer");
        if (!absl::SimpleAtoi(text, &out->i)) return out_of_range();
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_INT32 &&
            (out->i < std::numeric_limits<int32_t>::min() ||
             out->i > std::numeric_limits<int32_t>::max())) {
          return out_of_range();
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT32:
      case FieldDescriptor::CPPTYPE_UINT64: {
        if (!IsDecimalInteger(text)) return invalid("a decimal integer");
        if (text[0] == '-') return out_of_range();
        if (!absl::SimpleAtoi(text, &out->u)) return out_of_range();
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 &&
            out->u > std::numeric_limits<uint32_t>::max()) {
          return out_of_range();
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL:
        if (absl::EqualsIgnoreCase(text, "true")) {
          out->b = true;
        } else if (absl::EqualsIgnoreCase(text, "false")) {
          out->b = false;
        } else {
          return invalid("true or false");
        }
        return true;
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        const std::string lower = absl::AsciiStrToLower(text);
        if (lower == ".inf" || lower == "+.inf") {
          out->d = std::numeric_limits<double>::infinity();
        } else if (lower == "-.inf") {
          out->d = -std::numeric_limits<double>::infinity();
        } else if (lower == ".nan") {
          out->d = std::numeric_limits<double>::quiet_NaN();
        } else {
          if (lower.empty() || absl::ascii_isspace(static_cast<unsigned char>(lower.front())) ||
              absl::ascii_isspace(static_cast<unsigned char>(lower.back())) ||
              !absl::SimpleAtod(lower, &out->d)) {
            return invalid("a number");
          }
          // SimpleAtod turns overflow into infinity; only the spelled-out forms may be infinite.
          if (std::isinf(out->d) && !absl::StrContains(lower, "inf")) return out_of_range();
        }
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT && std::isfinite(out->d) &&
            std::fabs(out->d) > std::numeric_limits<float>::max()) {
          return out_of_range();
        }
        return true;
      }
      case FieldDescriptor::CPPTYPE_STRING:
        if (field->type() == FieldDescriptor::TYPE_STRING && !IsValidUtf8(text)) {
          *error = "string value is not valid UTF-8";
          return false;
        }
        out->s = text;
        return true;
      case FieldDescriptor::CPPTYPE_ENUM:
        return ConvertEnum(field->enum_type(), text, out, error);
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    *error = absl::StrCat("cannot convert a scalar to ", TypeName(field));
    return false;
  }

  bool ConvertEnum(const EnumDescriptor* e, const std::string& text, ScalarValue* out,
                   std::string* error) {
    auto [prefix_it, inserted] = enum_prefixes_.try_emplace(e);
    if (inserted) prefix_it->second = EnumPrefix(e);
    const std::string& prefix = prefix_it->second;

    std::string wanted = absl::AsciiStrToLower(text);
    for (char& c : wanted) {
      if (c == '-') c = '_';
    }
    const EnumValueDescriptor* found = e->FindValueByName(text);
    std::vector<std::string> accepted;
    for (int i = 0; i < e->value_count(); ++i) {
      const EnumValueDescriptor* v = e->value(i);
      if (IsRejectedEnumValue(v)) continue;
      std::string short_name = EnumShortName(v, prefix);
      if (found == nullptr && short_name == wanted) found = v;
      accepted.push_back(std::move(short_name));
    }
    if (found == nullptr || IsRejectedEnumValue(found)) {
      *error = absl::StrCat("invalid value ", QuoteForMessage(text), " for enum ",
                            e->full_name(), "; must be one of: ",
                            accepted.empty() ? "(none)" : absl::StrJoin(accepted, ", "));
      return false;
    }
    out->e = found;
    return true;
  }

  static void SetScalar(Message* msg, const FieldDescriptor* field, const ScalarValue& v,
                        bool add) {
    const Reflection* r = msg->GetReflection();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        add ? r->AddInt32(msg, field, static_cast<int32_t>(v.i))
            : r->SetInt32(msg, field, static_cast<int32_t>(v.i));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        add ? r->AddInt64(msg, field, v.i) : r->SetInt64(msg, field, v.i);
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        add ? r->AddUInt32(msg, field, static_cast<uint32_t>(v.u))
            : r->SetUInt32(msg, field, static_cast<uint32_t>(v.u));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        add ? r->AddUInt64(msg, field, v.u) : r->SetUInt64(msg, field, v.u);
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        add ? r->AddBool(msg, field, v.b) : r->SetBool(msg, field, v.b);
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        add ? r->AddDouble(msg, field, v.d) : r->SetDouble(msg, field, v.d);
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        add ? r->AddFloat(msg, field, static_cast<float>(v.d))
            : r->SetFloat(msg, field, static_cast<float>(v.d));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        add ? r->AddString(msg, field, v.s) : r->SetString(msg, field, v.s);
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        add ? r->AddEnum(msg, field, v.e) : r->SetEnum(msg, field, v.e);
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
  }

  // Timestamp/Duration are set through reflection on their seconds/nanos fields, so that a
  // message from a dynamic pool works as well as the generated type.
  static void SetSecondsNanos(Message* msg, int64_t seconds, int32_t nanos) {
    const Descriptor* d = msg->GetDescriptor();
    const Reflection* r = msg->GetReflection();
    r->SetInt64(msg, d->FindFieldByName("seconds"), seconds);
    r->SetInt32(msg, d->FindFieldByName("nanos"), nanos);
  }

  absl::Status SetTimestamp(const std::string& text, const SourceLocation& loc,
                            const std::string& path, Message* msg) const {
    absl::Time t;
    if (!ParseTimestampText(text, &t)) {
      return Fail(loc, path,
                  absl::StrCat("invalid timestamp ", QuoteForMessage(text),
                               ": expected RFC 3339 (e.g. 2026-01-01T00:00:00Z or "
                               "2026-01-01T09:30:00+01:00) or a date YYYY-MM-DD"));
    }
    const int64_t seconds = absl::ToUnixSeconds(t);
    if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds) {
      return Fail(loc, path,
                  absl::StrCat("timestamp ", QuoteForMessage(text),
                               " is out of range (years 0001 to 9999 UTC)"));
    }
    const int64_t nanos = absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds));
    SetSecondsNanos(msg, seconds, static_cast<int32_t>(nanos));
    return absl::OkStatus();
  }

  absl::Status SetDuration(const std::string& text, const SourceLocation& loc,
                           const std::string& path, Message* msg) const {
    absl::Duration d;
    if (!ParseDurationText(text, &d)) {
      return Fail(loc, path,
                  absl::StrCat("invalid duration ", QuoteForMessage(text),
                               ": expected e.g. 1.5s, 300ms, 2h45m or 5d"));
    }
    if (absl::AbsDuration(d) > absl::Seconds(kMaxDurationSeconds)) {  // also infinite
      return Fail(loc, path,
                  absl::StrCat("duration ", QuoteForMessage(text),
                               " is out of range (at most 10000 years)"));
    }
    const int64_t seconds = absl::ToInt64Seconds(d);
    const int64_t nanos = absl::ToInt64Nanoseconds(d - absl::Seconds(seconds));
    SetSecondsNanos(msg, seconds, static_cast<int32_t>(nanos));
    return absl::OkStatus();
  }

  std::string file_;
  SourceMap* map_;
  size_t max_nodes_;
  size_t visited_ = 0;
  absl::flat_hash_map<const EnumDescriptor*, std::string> enum_prefixes_;
};

SourceLocation MarkLocation(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0 || mark.column < 0) return SourceLocation{file, 1, 1};
  return SourceLocation{file, mark.line + 1, mark.column + 1};
}

}  // namespace

std::string SourceLocation::ToString() const {
  return absl::StrCat(file, ":", line, ":", column);
}

std::string JoinFieldPath(absl::string_view parent, absl::string_view field) {
  if (parent.empty()) return std::string(field);
  return absl::StrCat(parent, ".", field);
}

std::string JoinIndexPath(absl::string_view parent, int index) {
  return absl::StrCat(parent, "[", index, "]");
}

std::string JoinKeyPath(absl::string_view parent, absl::string_view key) {
  return absl::StrCat(parent, "[", QuoteForMessage(key), "]");
}

SourceLocation SourceMap::Locate(absl::string_view path) const {
  if (auto it = locations_.find(path); it != locations_.end()) return it->second;
  const std::vector<size_t> boundaries = ComponentBoundaries(path);
  for (auto b = boundaries.rbegin(); b != boundaries.rend(); ++b) {
    if (auto it = locations_.find(path.substr(0, *b)); it != locations_.end()) return it->second;
  }
  if (!path.empty()) {
    if (auto it = locations_.find(absl::string_view()); it != locations_.end()) {
      return it->second;
    }
  }
  return SourceLocation{file_, 1, 1};
}

absl::Status SourceMap::Error(absl::string_view path, absl::string_view message) const {
  return absl::InvalidArgumentError(FormatError(Locate(path), path, message));
}

void SourceMap::Record(std::string path, SourceLocation loc) {
  locations_.insert_or_assign(std::move(path), std::move(loc));
}

bool SourceMap::Contains(absl::string_view path) const { return locations_.contains(path); }

namespace {

// yaml-cpp 0.7 (Debian bookworm) never returns from LoadAll(), allocating a null document per
// turn, when a document starts with a token its parser does not consume, e.g. a stream that
// is just "," (yaml-cpp issue #1040, fixed upstream by PR #1319). Found by fuzzing
// (tests/fuzz/policy_fuzz). This walks the documents with the same parser first, without
// building them, and refuses the stream where a document starts at the same place as the one
// before it: no progress.
class DocumentProgress : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    stalled_ = started_ && mark.pos == last_.pos;
    started_ = true;
    last_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  bool stalled() const { return stalled_; }
  const YAML::Mark& last() const { return last_; }

 private:
  bool started_ = false;
  bool stalled_ = false;
  YAML::Mark last_;
};

// YAML::LoadAll() that throws a ParserException instead of looping forever.
std::vector<YAML::Node> LoadAllDocuments(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentProgress progress;
  while (parser.HandleNextDocument(progress)) {
    if (progress.stalled()) {
      throw YAML::ParserException(progress.last(), "unexpected token at the start of a document");
    }
  }
  return YAML::LoadAll(text);
}

}  // namespace

absl::StatusOr<SourceMap> ParseYamlToProto(absl::string_view yaml_text,
                                           absl::string_view file_name, Message* msg) {
  if (msg == nullptr) return absl::InvalidArgumentError("ParseYamlToProto: msg is null");
  msg->Clear();
  const std::string file(file_name);
  SourceMap map(file);
  absl::Status status;
  try {
    const std::vector<YAML::Node> docs = LoadAllDocuments(std::string(yaml_text));
    Converter converter(file, &map, std::max(kNodesPerByte * yaml_text.size(), kMinNodeBudget));
    status = converter.ParseDocuments(docs, msg);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own recursion guard (its message is a misleading "bad file").
    status = absl::InvalidArgumentError(
        FormatError(MarkLocation(file, e.mark), "",
                    absl::StrCat("invalid YAML: nesting deeper than ", kMaxYamlDepth, " levels")));
  } catch (const YAML::Exception& e) {
    // ParserException (syntax errors, DeepRecursion) and the rest carry a 0-based mark.
    status = absl::InvalidArgumentError(
        FormatError(MarkLocation(file, e.mark), "", absl::StrCat("invalid YAML: ", e.msg)));
  } catch (const std::exception& e) {
    status = absl::InvalidArgumentError(
        FormatError(SourceLocation{file, 1, 1}, "", absl::StrCat("cannot parse: ", e.what())));
  } catch (...) {
    status = absl::InvalidArgumentError(
        FormatError(SourceLocation{file, 1, 1}, "", "cannot parse: unknown error"));
  }
  if (!status.ok()) {
    msg->Clear();
    return status;
  }
  return map;
}

absl::StatusOr<SourceMap> LoadYamlFile(const std::string& path, Message* msg) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (f == nullptr) {
    const int err = errno;
    const std::string reason = std::error_code(err, std::generic_category()).message();
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", reason));
    }
    return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, ": ", reason));
  }
  std::string text;
  char buffer[1 << 16];
  while (true) {
    const size_t n = std::fread(buffer, 1, sizeof(buffer), f.get());
    text.append(buffer, n);
    if (n < sizeof(buffer)) break;
  }
  if (std::ferror(f.get())) {
    const int err = errno;
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot read ", path, ": ", std::error_code(err, std::generic_category()).message()));
  }
  return ParseYamlToProto(text, path, msg);
}

}  // namespace knooppunt::config
