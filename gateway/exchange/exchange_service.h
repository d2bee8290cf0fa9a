// The Exchange service: where a message's path is put together, top-down —
//   accept → authenticate → decide → (transform) → audit → forward.
// Each step lives in its own module; this file only sequences them and maps their results
// onto gRPC status codes.
//
// Guarantees: nothing is forwarded unless the caller's certificate OIN equals the envelope's
// sender, an agreement in force allows the exchange, and the decision record was written.
// Every call yields a decision record (allowed or denied) and, once finished, an outcome
// record. Callback API: no thread blocks on a request; the caller's deadline and
// cancellation are carried over to the endpoint call.
#ifndef KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_
#define KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_

#include <string>

#include "absl/time/time.h"
#include "gateway/audit/decision_log.h"
#include "gateway/forward/endpoint_channels.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/policy/policy_store.h"
#include "google/protobuf/descriptor.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::exchange {

struct ExchangeOptions {
  std::string instance_id;
  size_t max_payload_bytes = 4 << 20;
  absl::Duration default_deadline = absl::Seconds(30);
  absl::Duration max_deadline = absl::Seconds(120);
};

// Everything the service needs; not owned, must outlive the service.
struct ExchangeDependencies {
  const policy::PolicyStore* policy = nullptr;
  const identity::PeerAuthenticator* authenticator = nullptr;
  audit::DecisionLog* decision_log = nullptr;
  forward::EndpointChannels* endpoints = nullptr;
  const google::protobuf::DescriptorPool* types = nullptr;
};

class ExchangeService final : public v1::Exchange::CallbackService {
 public:
  ExchangeService(ExchangeDependencies deps, ExchangeOptions options)
      : deps_(deps), options_(std::move(options)) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* context,
                                    const v1::Envelope* request, v1::Envelope* reply) override;

 private:
  friend class BevragingCall;
  const ExchangeDependencies deps_;
  const ExchangeOptions options_;
};

}  // namespace knooppunt::exchange

#endif  // KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_
