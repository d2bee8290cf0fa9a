// Generic YAML -> protobuf loader: the foundation of every configuration file in Knooppunt.
//
// Configuration files are YAML documents mapped onto a proto schema by field name, so a
// misspelt or unknown key is an error rather than a silently ignored setting. Every error
// carries "file:line:column" (1-based) pointing at the offending key or value, and the
// returned SourceMap lets later validation steps point at the element they reject.
//
// Mapping rules (see ParseYamlToProto):
//   message          YAML mapping whose keys are the proto field names (snake_case);
//                    unknown and duplicate keys are errors; null/empty value = empty message.
//   string, bytes    any scalar, taken literally (bytes are the raw string, not base64).
//   integers         decimal only ([+-]digits); fractions, hex and overflow are errors.
//   bool             true/false, case-insensitive (no yes/no/on/off).
//   double, float    decimal or exponent notation, .inf/-.inf/.nan; overflow is an error.
//   enum             the full value name ("MODE_BEVRAGING") or, case-insensitively, the name
//                    without the enum's common prefix ("bevraging"); '-' matches '_'. The
//                    *_UNSPECIFIED zero value is never accepted.
//   repeated         YAML sequence; null/empty value = empty list.
//   map<K, V>        YAML mapping; keys converted to K; null/empty value = empty map.
//   oneof            at most one member may be given.
//   Timestamp        RFC 3339 string ("2026-01-01T00:00:00Z", "...+02:00") or a date
//                    "YYYY-MM-DD" (midnight UTC).
//   Duration         absl::ParseDuration syntax ("1.5s", "300ms", "2h45m"), optionally
//                    preceded by whole days ("5d", "1d12h").
// A null value for a scalar field is an error. Nesting deeper than kMaxYamlDepth collection
// levels is an error, as is a stream with more than one YAML document in it, and alias
// expansion beyond a budget linear in the input size ("billion laughs").
// Scalars are taken by their text: `name: 0014` is the string "0014", `port: "443"` the
// integer 443.
#ifndef KNOOPPUNT_GATEWAY_CONFIG_YAML_PROTO_H_
#define KNOOPPUNT_GATEWAY_CONFIG_YAML_PROTO_H_

#include <cstddef>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace knooppunt::config {

// Deepest nesting of YAML collections (mappings and sequences) accepted; the root mapping is
// level 1.
inline constexpr int kMaxYamlDepth = 64;

struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  // "file:line:col".
  std::string ToString() const;
};

// Paths name elements of a parsed document: field names joined by '.', list elements with
// [i], map entries with ["key"] (key escaped with backslashes for '"', '\\' and control
// characters), e.g. "agreements[2].from[1]", "organisations[0].endpoint.address",
// "labels[\"x\"]". The root message is the empty path.
std::string JoinFieldPath(absl::string_view parent, absl::string_view field);
std::string JoinIndexPath(absl::string_view parent, int index);
std::string JoinKeyPath(absl::string_view parent, absl::string_view key);

// Records where each element of the parsed document came from, by path.
// Messages, lists and maps given as a field or map value are recorded at their key; scalar
// values (including Timestamp and Duration), list elements and the root message at the value
// itself. A null (empty) value is recorded at its key.
class SourceMap {
 public:
  SourceMap() = default;
  explicit SourceMap(std::string file) : file_(std::move(file)) {}

  const std::string& file() const { return file_; }

  // Location of the path, or of its nearest recorded ancestor, or file:1:1.
  SourceLocation Locate(absl::string_view path) const;

  // absl::InvalidArgumentError("<file>:<line>:<col>: <path>: <message>"), located with
  // Locate(path). For the empty (root) path: "<file>:<line>:<col>: <message>".
  absl::Status Error(absl::string_view path, absl::string_view message) const;

  // Used by the parser. A later record for the same path replaces the earlier one.
  void Record(std::string path, SourceLocation loc);

  // Whether exactly this path was recorded.
  bool Contains(absl::string_view path) const;
  size_t size() const { return locations_.size(); }

 private:
  std::string file_;
  absl::flat_hash_map<std::string, SourceLocation> locations_;
};

// Parses YAML text into *msg (cleared first) using its descriptor. On error *msg is cleared
// and the status is InvalidArgument "file:line:col: path: message". An empty document (or one
// that is only comments, or a bare null) yields an empty message. Never throws.
absl::StatusOr<SourceMap> ParseYamlToProto(absl::string_view yaml_text,
                                           absl::string_view file_name,
                                           google::protobuf::Message* msg);

// Reads the file and calls ParseYamlToProto with the path as file name. A missing file is
// NotFound, an unreadable one (permissions, a directory, ...) InvalidArgument; both name the
// path.
absl::StatusOr<SourceMap> LoadYamlFile(const std::string& path, google::protobuf::Message* msg);

}  // namespace knooppunt::config

#endif  // KNOOPPUNT_GATEWAY_CONFIG_YAML_PROTO_H_
