// The test federation the integration tests run against: the real gateway binary with the
// dev PKI's organisations, a few agreements, and in-process endpoints.
//
//   BRP (register)            endpoint: TestEndpoint with brp.crt
//   Groningen (gemeente 0014) endpoint: TestEndpoint with groningen.crt
//   "Spiegelregister" (kMirrorRegisterOin)  endpoint: TestEndpoint with zaanstad.crt — the
//                             certificate carries another OIN than the registry names
//   "Register zonder luisteraar" (kClosedRegisterOin)  endpoint: a port nobody listens on
//   Zaanstad, Amsterdam, Verhuizen, ...  no endpoint
//
// Agreements (see FederationAgreements()):
//   brp-bevragen-afnemers       PersoonVraag→Persoon, group:brp-afnemers (Groningen) → BRP,
//                               purposes BRP-bevraging, BRP-bijhouding, in force since 2020
//   brp-bevragen-testregisters  PersoonVraag→Persoon, Groningen → mirror, closed, Zaanstad
//   brp-bevragen-verlopen       PersoonVraag→Persoon, Amsterdam → BRP, 2020-01-01..2021-01-01
//   brp-bevragen-toekomstig     PersoonVraag→Persoon, Verhuizen → BRP, from 2099-01-01
//   brp-lokaal-groningen        PersoonVraag→Persoon, Amsterdam → gemeente:0014
//   verhuizen-naar-gemeenten    Verhuismelding (melding), Verhuizen → group:gemeenten
//
// Every agreement lets all fields pass (fields / reply_fields: all: true), so payloads reach
// the endpoint unchanged. Limits: max_payload_bytes 1024, default deadline 5s, max deadline
// 10s, handshake timeout 3s, 16 concurrent streams per connection; CRLs checked.
//
// One gateway per test suite (SetUpTestSuite). After every test, TearDown checks that the
// gateway is still running and still serves an allowed bevraging.
#ifndef KNOOPPUNT_TESTS_INTEGRATION_FEDERATION_H_
#define KNOOPPUNT_TESTS_INTEGRATION_FEDERATION_H_

#include <map>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {

inline constexpr absl::string_view kMirrorRegisterOin = "00000099200000000002";
inline constexpr absl::string_view kClosedRegisterOin = "00000099200000000003";
inline constexpr uint32_t kFederationMaxPayloadBytes = 1024;
inline constexpr absl::string_view kFederationHandshakeTimeout = "3s";
inline constexpr uint32_t kFederationMaxConcurrentStreams = 16;
// A BSN that passes the 11-proef; it must never show up in the decision log.
inline constexpr absl::string_view kTestBsn = "999993653";

// agreements/<file> → YAML.
std::map<std::string, std::string> FederationAgreements();

// The registry with the given endpoint addresses.
std::string FederationRegistry(const std::string& brp_address, const std::string& groningen_address,
                               const std::string& mirror_address,
                               const std::string& closed_address);

// A PersoonVraag for kTestBsn from `sender` to `recipient`, built with client::NewEnvelope.
exchange::v1::Envelope PersoonVraagEnvelope(absl::string_view sender, absl::string_view recipient,
                                            absl::string_view purpose = "BRP-bevraging");

// Hex SHA-256, to compare with the decision log's payload_sha256.
std::string Sha256Hex(absl::string_view bytes);

class FederationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  static GatewayProcess& gateway() { return *gateway_; }
  static TestEndpoint& brp() { return *brp_; }
  static TestEndpoint& groningen() { return *groningen_; }
  static TestEndpoint& mirror() { return *mirror_; }

  // A stub to the gateway with PkiPath("<cert_stem>.crt"), cached for the suite.
  static exchange::v1::Exchange::Stub& StubFor(absl::string_view cert_stem);

  // One Exchange.Request with a deadline of `timeout` from now.
  static grpc::Status Request(exchange::v1::Exchange::Stub& stub,
                              const exchange::v1::Envelope& request, exchange::v1::Envelope* reply,
                              absl::Duration timeout = absl::Seconds(5));
  static grpc::Status Request(absl::string_view cert_stem, const exchange::v1::Envelope& request,
                              exchange::v1::Envelope* reply,
                              absl::Duration timeout = absl::Seconds(5)) {
    return Request(StubFor(cert_stem), request, reply, timeout);
  }

  // Expects exactly one "decision" record DENIED for the message with grpc_status `code`, and
  // returns it (a default record when there is none).
  static audit::v1::DecisionRecord ExpectDeniedRecord(const exchange::v1::Envelope& request,
                                                      grpc::StatusCode code);

 private:
  static std::unique_ptr<TestEndpoint> brp_, groningen_, mirror_;
  static std::unique_ptr<ClosedPort> closed_;
  static std::unique_ptr<GatewayProcess> gateway_;
  static std::map<std::string, std::unique_ptr<exchange::v1::Exchange::Stub>>* stubs_;
  static std::string setup_error_;
};

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_INTEGRATION_FEDERATION_H_
