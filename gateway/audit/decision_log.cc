#include "gateway/audit/decision_log.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace knooppunt::audit {

absl::StatusOr<std::unique_ptr<JsonLinesDecisionLog>> JsonLinesDecisionLog::Open(
    const std::string& path) {
  if (path.empty()) {
    return std::unique_ptr<JsonLinesDecisionLog>(new JsonLinesDecisionLog(stderr, false));
  }
  FILE* out = std::fopen(path.c_str(), "a");
  if (out == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot open decision log ", path, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<JsonLinesDecisionLog>(new JsonLinesDecisionLog(out, true));
}

JsonLinesDecisionLog::~JsonLinesDecisionLog() {
  if (owned_) std::fclose(out_);
}

absl::Status JsonLinesDecisionLog::Record(const v1::DecisionRecord& record) {
  std::string line;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(record, &line, options).ok()) {
    return absl::InternalError("cannot encode decision record");
  }
  line.push_back('\n');
  absl::MutexLock lock(&mu_);
  if (std::fwrite(line.data(), 1, line.size(), out_) != line.size() || std::fflush(out_) != 0) {
    return absl::UnavailableError(
        absl::StrCat("decision log write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace knooppunt::audit
