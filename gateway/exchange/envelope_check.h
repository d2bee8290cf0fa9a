// Step 1 of a message's path: accept. The structural checks on an envelope that need no
// policy: every header field present and well-formed, a payload of a known type within the
// size limit.
//
// Guarantees: CheckEnvelope() returns the payload's message type only for an envelope whose
// message_id is a UUID, sender an OIN, purpose non-empty, recipient non-empty, and whose
// payload has a type known to `types` and 1..max_payload_bytes bytes. Errors are
// INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for size; they name the field, never its contents
// beyond the header. The payload is not parsed.
#ifndef KNOOPPUNT_GATEWAY_EXCHANGE_ENVELOPE_CHECK_H_
#define KNOOPPUNT_GATEWAY_EXCHANGE_ENVELOPE_CHECK_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace knooppunt::exchange {

// "type.googleapis.com/gemeente.brp.v1.PersoonVraag" → "gemeente.brp.v1.PersoonVraag".
absl::string_view MessageTypeOf(absl::string_view type_url);

absl::StatusOr<absl::string_view> CheckEnvelope(const v1::Envelope& envelope,
                                                size_t max_payload_bytes,
                                                const google::protobuf::DescriptorPool& types);

}  // namespace knooppunt::exchange

#endif  // KNOOPPUNT_GATEWAY_EXCHANGE_ENVELOPE_CHECK_H_
