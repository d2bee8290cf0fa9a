// Wiring of meldingen into a gateway: opens the configured MessageStore, loads what it still
// holds into a DeliveryScheduler and attaches both to the Exchange service.
//
// Guarantees: every delivery is written to the decision log (event "delivered"). StartMeldingen() fails (nothing started) when the store cannot be opened or
// read; on success every message the store still holds is scheduled for delivery before the
// gateway serves. Shutdown order (GatewayServer): scheduler Stop() → server drained → store
// Close(), so no acknowledged Send is lost and no delivery outlives its dependencies.
#ifndef KNOOPPUNT_GATEWAY_SERVER_MELDING_WIRING_H_
#define KNOOPPUNT_GATEWAY_SERVER_MELDING_WIRING_H_

#include <memory>

#include "absl/status/status.h"
#include "gateway/audit/decision_log.h"
#include "gateway/observability/metrics.h"
#include "gateway/delivery/delivery_scheduler.h"
#include "gateway/exchange/exchange_service.h"
#include "gateway/forward/endpoint_channels.h"
#include "gateway/policy/policy_store.h"
#include "gateway/store/message_store.h"
#include "knooppunt/config/v1/gateway_config.pb.h"

namespace knooppunt::server {

struct Meldingen {
  std::unique_ptr<store::MessageStore> store;
  std::unique_ptr<delivery::DeliveryScheduler> delivery;
};

// Each delivery (push OK or Ack) is recorded in `decision_log` as an "outcome"-like record
// with event "delivered" and operation "Deliver" (best effort: the message has arrived).
struct MeldingDependencies {
  const policy::PolicyStore* policy = nullptr;
  forward::EndpointChannels* endpoints = nullptr;
  exchange::ExchangeService* exchange = nullptr;
  audit::DecisionLog* decision_log = nullptr;  // may be null: deliveries are not recorded
  const google::protobuf::DescriptorPool* types = nullptr;
  std::string instance_id;
  observability::Metrics* metrics = nullptr;  // optional: delivery attempts are counted
};

absl::Status StartMeldingen(const config::v1::MeldingConfig& config,
                            const MeldingDependencies& deps, Meldingen* out);

// Scheduler stopped, then store closed; safe to call twice.
void StopMeldingen(Meldingen* meldingen);

}  // namespace knooppunt::server

#endif  // KNOOPPUNT_GATEWAY_SERVER_MELDING_WIRING_H_
