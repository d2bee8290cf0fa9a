// Test pieces for meldingen end to end: a gateway process that can be killed with SIGKILL and
// restarted on the same database (the shared harness stops gateways only gracefully), an
// in-process organisation endpoint that implements Endpoint.Deliver over real mutual TLS,
// and helpers to build and send Verhuismeldingen.
#ifndef KNOOPPUNT_TESTS_MELDING_MELDING_FIXTURE_H_
#define KNOOPPUNT_TESTS_MELDING_MELDING_FIXTURE_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"
#include "tests/testing/gateway_harness.h"

namespace knooppunt::testing {

// A gateway process in its own directory; its meldingen.db stays across Kill9()/Start().
class MeldingGateway {
 public:
  // Writes the configuration into a fresh temporary directory (removed by the destructor).
  explicit MeldingGateway(const GatewayConfigFiles& files);
  ~MeldingGateway();

  // Starts the gateway and waits (bounded) until it serves; false with its stderr logged.
  bool Start(absl::Duration timeout = absl::Seconds(30));
  void Kill9();
  // SIGTERM and wait; returns whether it exited with status 0.
  bool Stop();

  int port() const { return port_; }
  std::string address() const;
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }  // -1 when not running
  std::string Stderr() const;

 private:
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// The melding section for gateway.yaml with fast retries (tests must not wait for minutes).
std::string FastMeldingYaml(absl::string_view extra = "");

// The agreement of the demo (Verhuizen → every municipality, melding) with `retry_window`,
// and a bevraging agreement (Groningen → BRP), as agreement files.
std::map<std::string, std::string> MeldingAgreements(absl::string_view retry_window = "5d");

// A configuration: the dev PKI's organisations (Groningen's endpoint at `groningen_address`
// when not empty), MeldingAgreements(retry_window), FastMeldingYaml(melding_extra).
GatewayConfigFiles MeldingFiles(const std::string& groningen_address,
                                absl::string_view retry_window = "5d",
                                absl::string_view melding_extra = "");

// An Endpoint that records the meldingen delivered to it. Serves with the dev PKI's
// certificate `cert_stem` on 127.0.0.1:`port` (0: any free port).
class DeliverEndpoint {
 public:
  static std::unique_ptr<DeliverEndpoint> Start(absl::string_view cert_stem, int port = 0);
  ~DeliverEndpoint();

  int port() const { return port_; }
  std::string address() const;

  // Every n-th call (1-based) fails with UNAVAILABLE; 0: none fail.
  void FailEvery(int n);

  struct Delivery {
    exchange::v1::Envelope envelope;
    std::string caller_oin;    // OIN of the client certificate (the gateway's)
    std::string agreement_id;  // metadata
  };
  // Successful deliveries, in the order they were answered OK.
  std::vector<Delivery> delivered() const;
  int calls() const;
  // Waits (bounded) until every id in `ids` was delivered at least once.
  bool WaitForIds(const std::vector<std::string>& ids, absl::Duration timeout) const;

 private:
  class Service;
  DeliverEndpoint() = default;

  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// A Verhuismelding envelope from Verhuizen to `recipient` with a fresh message id.
exchange::v1::Envelope Verhuismelding(absl::string_view recipient = "gemeente:0014",
                                      absl::string_view correlation_id = "",
                                      absl::string_view toelichting = "");

grpc::Status SendMelding(exchange::v1::Exchange::Stub& stub, const exchange::v1::Envelope& e,
                         exchange::v1::Receipt* receipt,
                         absl::Duration deadline = absl::Seconds(20));

absl::StatusOr<exchange::v1::DeliveryStatus> GetStatus(exchange::v1::Exchange::Stub& stub,
                                                       absl::string_view message_id,
                                                       absl::string_view sender = "");

// Polls GetStatus (bounded) until the state is `state`.
absl::StatusOr<exchange::v1::DeliveryStatus> WaitForState(
    exchange::v1::Exchange::Stub& stub, absl::string_view message_id,
    exchange::v1::DeliveryState state, absl::Duration timeout = absl::Seconds(30));

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_MELDING_MELDING_FIXTURE_H_
