#include "gateway/exchange/envelope_check.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/ids.h"

namespace knooppunt::exchange {

absl::string_view MessageTypeOf(absl::string_view type_url) {
  const size_t slash = type_url.rfind('/');
  return slash == absl::string_view::npos ? type_url : type_url.substr(slash + 1);
}

absl::StatusOr<absl::string_view> CheckEnvelope(const v1::Envelope& envelope,
                                                size_t max_payload_bytes,
                                                const google::protobuf::DescriptorPool& types) {
  if (!IsValidUuid(envelope.message_id())) {
    return absl::InvalidArgumentError("message_id must be a UUID (8-4-4-4-12 hex digits)");
  }
  if (!IsValidOin(envelope.sender())) {
    return absl::InvalidArgumentError("sender must be an OIN (20 digits)");
  }
  if (envelope.recipient().empty()) return absl::InvalidArgumentError("recipient is empty");
  if (envelope.purpose().empty()) {
    return absl::InvalidArgumentError("purpose is empty: an exchange must state its purpose");
  }
  if (!envelope.has_payload() || envelope.payload().type_url().empty()) {
    return absl::InvalidArgumentError("payload is missing");
  }
  if (envelope.payload().value().empty()) {
    return absl::InvalidArgumentError("payload is empty");
  }
  if (envelope.payload().value().size() > max_payload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("payload of ", envelope.payload().value().size(),
                                                     " bytes exceeds the limit of ",
                                                     max_payload_bytes, " bytes"));
  }
  const absl::string_view type = MessageTypeOf(envelope.payload().type_url());
  if (types.FindMessageTypeByName(std::string(type)) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown message type '", type, "'"));
  }
  return type;
}

}  // namespace knooppunt::exchange
