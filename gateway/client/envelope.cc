#include "gateway/client/envelope.h"

#include "absl/time/clock.h"
#include "gateway/common/ids.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::client {

exchange::v1::Envelope NewEnvelope(const std::string& sender_oin, const std::string& recipient,
                                   const std::string& purpose,
                                   const google::protobuf::Message& payload) {
  exchange::v1::Envelope envelope;
  envelope.set_message_id(NewUuid());
  envelope.set_sender(sender_oin);
  envelope.set_recipient(recipient);
  envelope.set_purpose(purpose);
  envelope.mutable_payload()->PackFrom(payload);
  *envelope.mutable_created_at() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::GetCurrentTimeNanos());
  TraceIds trace = ContinueTrace("");
  envelope.mutable_trace()->set_traceparent(FormatTraceparent(trace));
  return envelope;
}

}  // namespace knooppunt::client
