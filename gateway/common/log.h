// Operational log: one JSON object per line on standard error. Never personal data — callers
// log identifiers (OINs, message ids, agreement ids), never payloads or BSNs.
#ifndef KNOOPPUNT_GATEWAY_COMMON_LOG_H_
#define KNOOPPUNT_GATEWAY_COMMON_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace knooppunt {

enum class LogLevel { kInfo, kWarning, kError };

using LogField = std::pair<absl::string_view, std::string>;

// {"time":"...","level":"info","event":"<event>","<k>":"<v>",...}
void Log(LogLevel level, absl::string_view event, std::initializer_list<LogField> fields = {});

// JSON string escaping (quotes included), also used by tools that print JSON.
std::string JsonQuote(absl::string_view s);

}  // namespace knooppunt

#endif  // KNOOPPUNT_GATEWAY_COMMON_LOG_H_
