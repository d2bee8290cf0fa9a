// Client-side helpers for parties that talk to Knooppunt: building envelopes the gateway
// accepts. (The start of the integration kit; used by the demo parties and the tests.)
#ifndef KNOOPPUNT_GATEWAY_CLIENT_ENVELOPE_H_
#define KNOOPPUNT_GATEWAY_CLIENT_ENVELOPE_H_

#include <string>

#include "google/protobuf/message.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace knooppunt::client {

// An envelope with a fresh UUID message id, the current time, a new W3C trace and `payload`
// packed as google.protobuf.Any (its full name becomes the message type).
exchange::v1::Envelope NewEnvelope(const std::string& sender_oin, const std::string& recipient,
                                   const std::string& purpose,
                                   const google::protobuf::Message& payload);

}  // namespace knooppunt::client

#endif  // KNOOPPUNT_GATEWAY_CLIENT_ENVELOPE_H_
