// Step 3 of a message's path: decide. The agreements in force, compiled into lookup tables.
//
// Guarantees: default deny — Decide() allows an exchange only when one agreement matches
// sender, recipient, message type, purpose and mode and is in force at the given time. A
// denial names the first dimension that failed, looking only at agreements in which the
// sender is a party, so it never reveals what other parties agreed. Build() rejects a broken
// agreement set whole, with the file:line of the first error — including a field path that
// the message type does not have, and an agreement that neither lists its fields nor says
// that all pass. Immutable after Build(); safe
// to read from any thread; Decide() allocates only for a denial's reason.
#ifndef KNOOPPUNT_GATEWAY_POLICY_AGREEMENT_BOOK_H_
#define KNOOPPUNT_GATEWAY_POLICY_AGREEMENT_BOOK_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gateway/config/yaml_proto.h"
#include "gateway/policy/registry.h"
#include "gateway/ratelimit/token_buckets.h"
#include "gateway/transform/field_filter.h"
#include "google/protobuf/descriptor.h"
#include "knooppunt/config/v1/agreement.pb.h"

namespace knooppunt::policy {

struct CompiledAgreement {
  std::string id;
  std::string message_type;
  std::string reply_type;
  config::v1::ExchangeMode mode = config::v1::EXCHANGE_MODE_UNSPECIFIED;
  absl::flat_hash_set<std::string> senders;     // OINs
  absl::flat_hash_set<std::string> recipients;  // OINs
  absl::flat_hash_set<std::string> purposes;
  absl::Time valid_from = absl::InfinitePast();
  absl::Time valid_until = absl::InfiniteFuture();
  std::string source;  // file:line, for operators
  // Which fields of the payload, and of the reply (bevragingen), pass; compiled against
  // the message types, so an unknown path is a load error.
  transform::FieldPlan fields;
  transform::FieldPlan reply_fields;
  // Rate limit, when the agreement sets one.
  bool has_rate = false;
  ratelimit::RateSpec rate;
  bool rate_per_sender = false;
  // Meldingen: how long delivery is retried before the message expires (default 5 days).
  absl::Duration retry_window = absl::Hours(24 * 5);
};

// The dimension of an exchange that no agreement covered.
enum class DeniedOn { kNothing, kMessageType, kRecipient, kPurpose, kMode, kPeriod };
absl::string_view DeniedOnName(DeniedOn d);

struct Decision {
  const CompiledAgreement* agreement = nullptr;  // set when allowed
  DeniedOn denied_on = DeniedOn::kNothing;
  std::string reason;  // for denials, safe to return to the sender
  bool allowed() const { return agreement != nullptr; }
};

struct ExchangeFacts {
  absl::string_view sender_oin;
  absl::string_view recipient_oin;
  absl::string_view message_type;
  absl::string_view purpose;
  config::v1::ExchangeMode mode = config::v1::EXCHANGE_MODE_UNSPECIFIED;
  absl::Time at;
};

// One parsed agreements file and where its elements came from.
struct AgreementFile {
  config::v1::AgreementSet agreements;
  config::SourceMap source;
};

class AgreementBook {
 public:
  // `types` is the pool message types are looked up in.
  static absl::StatusOr<AgreementBook> Build(const std::vector<AgreementFile>& files,
                                             const Registry& registry,
                                             const google::protobuf::DescriptorPool& types);

  Decision Decide(const ExchangeFacts& facts) const;

  const std::vector<CompiledAgreement>& agreements() const { return agreements_; }

 private:
  std::vector<CompiledAgreement> agreements_;
  // message type → indexes into agreements_, in id order.
  absl::flat_hash_map<std::string, std::vector<size_t>> by_message_type_;
};

}  // namespace knooppunt::policy

#endif  // KNOOPPUNT_GATEWAY_POLICY_AGREEMENT_BOOK_H_
