// knooppunt-demo: plays the brief's scenario against a running gateway, as the parties would,
// and prints what happened in words. Exits 0 only when every step behaved as expected, so
// the demo is also an end-to-end check.
//
//   knooppunt-demo --pki_dir=certs/dev --gateway=127.0.0.1:18443 --decision_log=FILE
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gateway/client/envelope.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "grpcpp/create_channel.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

ABSL_FLAG(std::string, pki_dir, "certs/dev", "directory made by tools/dev-pki.sh");
ABSL_FLAG(std::string, gateway, "127.0.0.1:18443", "the gateway's address");
ABSL_FLAG(std::string, gateway_oin, "00000099000000000001", "the OIN the gateway must present");
ABSL_FLAG(std::string, decision_log, "", "the gateway's decision log (JSON lines) to summarise");

namespace {

using knooppunt::exchange::v1::Envelope;
using knooppunt::exchange::v1::Exchange;

constexpr char kBsn[] = "999993653";
constexpr char kVerhuizenOin[] = "00000099100000000001";
constexpr char kBrpOin[] = "00000099200000000001";
constexpr char kGroningenOin[] = "00000099300000000014";
constexpr char kZaanstadOin[] = "00000099300000000479";

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (content.empty()) {
    std::fprintf(stderr, "cannot read %s (did tools/dev-pki.sh run?)\n", path.c_str());
    std::exit(1);
  }
  return content;
}

// A party's connection to the gateway, presenting the certificate pair `name`.{crt,key}.
std::unique_ptr<Exchange::Stub> Connect(const std::string& name) {
  const std::string dir = absl::GetFlag(FLAGS_pki_dir) + "/";
  auto creds = knooppunt::tls::MutualTlsChannelCredentials(
      Read(dir + "ca.crt"), Read(dir + name + ".crt"), Read(dir + name + ".key"),
      absl::GetFlag(FLAGS_gateway_oin));
  return Exchange::NewStub(grpc::CreateChannel(absl::GetFlag(FLAGS_gateway), creds));
}

grpc::Status Ask(Exchange::Stub& stub, const Envelope& request, Envelope* reply) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return stub.Request(&ctx, request, reply);
}

std::string Code(const grpc::Status& s) {
  static const char* kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                 "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                 "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                 "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int code = s.error_code();
  return code >= 0 && code <= 16 ? kNames[code] : absl::StrCat(code);
}

Envelope PersonQuery(const std::string& sender) {
  gemeente::brp::v1::PersoonVraag query;
  query.set_bsn(kBsn);
  return knooppunt::client::NewEnvelope(sender, kBrpOin, "BRP-bevraging", query);
}

struct Step {
  std::string title;
  std::function<bool()> run;  // prints its outcome, returns whether it was as expected
};

bool Expect(const grpc::Status& status, grpc::StatusCode expected, const std::string& what) {
  const bool as_expected = status.error_code() == expected;
  std::printf("     -> %s: %s\n", Code(status).c_str(),
              status.ok() ? what.c_str() : status.error_message().c_str());
  if (!as_expected) {
    std::printf("     !! expected %s\n", Code(grpc::Status(expected, "")).c_str());
  }
  return as_expected;
}

void SummariseDecisionLog(const std::string& path) {
  std::ifstream in(path);
  if (path.empty() || !in) return;
  int allowed = 0, denied = 0, outcomes = 0, deliveries = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"event\":\"outcome\"") != std::string::npos) {
      ++outcomes;
    } else if (line.find("\"event\":\"delivered\"") != std::string::npos) {
      ++deliveries;
    } else if (line.find("DECISION_ALLOWED") != std::string::npos) {
      ++allowed;
    } else if (line.find("DECISION_DENIED") != std::string::npos) {
      ++denied;
    }
  }
  std::printf("\n  The gateway recorded %d allowed and %d denied decisions, %d outcomes and %d "
              "delivery(ies) in\n"
              "  %s (one JSON line each: who, to whom, which type and purpose,\n"
              "  which agreement, the payload's SHA-256 — never the payload itself).\n",
              allowed, denied, outcomes, deliveries, path.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  std::vector<Step> steps;

  steps.push_back({"The national Verhuizen service sends a moving notification (Verhuismelding) for "
                   "BSN ******653 to the new municipality, gemeente:0014 (Groningen); the gateway "
                   "stores it, delivers it, and the sender checks its status",
                   [] {
                     auto stub = Connect("verhuizen");
                     gemeente::verhuizen::v1::Verhuismelding melding;
                     melding.set_bsn(kBsn);
                     auto* adres = melding.mutable_nieuw_adres();
                     adres->set_straat("Grote Markt");
                     adres->set_huisnummer(1);
                     adres->set_postcode("9711LV");
                     adres->set_woonplaats("Groningen");
                     adres->set_gemeentecode("0014");
                     melding.mutable_datum_verhuizing()->set_jaar(2026);
                     melding.mutable_datum_verhuizing()->set_maand(5);
                     melding.mutable_datum_verhuizing()->set_dag(1);
                     Envelope e = knooppunt::client::NewEnvelope(kVerhuizenOin, "gemeente:0014",
                                                                 "BRP-bijhouding", melding);
                     knooppunt::exchange::v1::Receipt receipt;
                     grpc::Status s;
                     {
                       grpc::ClientContext ctx;
                       ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
                       s = stub->Send(&ctx, e, &receipt);
                     }
                     if (!s.ok()) return Expect(s, grpc::StatusCode::OK, "");
                     std::printf("     -> OK: accepted (stored on disk) under agreement %s, "
                                 "message id %s\n",
                                 receipt.agreement_id().c_str(), receipt.message_id().c_str());
                     knooppunt::exchange::v1::StatusRequest ask;
                     ask.set_message_id(e.message_id());
                     knooppunt::exchange::v1::DeliveryStatus status;
                     const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
                     while (std::chrono::steady_clock::now() < until) {
                       grpc::ClientContext ctx;
                       ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
                       s = stub->GetStatus(&ctx, ask, &status);
                       if (s.ok() && status.state() ==
                                         knooppunt::exchange::v1::DELIVERY_STATE_DELIVERED) {
                         std::printf("     -> GetStatus: DELIVERED to %s after %u attempt(s)\n",
                                     status.recipient().c_str(), status.attempts());
                         return true;
                       }
                       std::this_thread::sleep_for(std::chrono::milliseconds(100));
                     }
                     std::printf("     !! not delivered in time: %s %s\n",
                                 s.error_message().c_str(), status.ShortDebugString().c_str());
                     return false;
                   }});

  steps.push_back({"Gemeente Groningen's backoffice asks the central BRP person service for the "
                   "citizen with BSN ******653 (purpose BRP-bevraging)",
                   [] {
                     auto stub = Connect("groningen");
                     Envelope reply;
                     grpc::Status s = Ask(*stub, PersonQuery(kGroningenOin), &reply);
                     gemeente::brp::v1::Persoon person;
                     if (s.ok() && reply.payload().UnpackTo(&person)) {
                       std::printf("     -> OK: agreement %s allowed it; the reply comes from %s\n",
                                   reply.agreement_id().c_str(), reply.sender().c_str());
                       std::printf("        naam: %s %s %s, woonplaats: %s\n",
                                   person.naam().voornamen().c_str(),
                                   person.naam().voorvoegsel().c_str(),
                                   person.naam().geslachtsnaam().c_str(),
                                   person.verblijfplaats().adres().woonplaats().c_str());
                       // The BRP service answers with the whole person list; the agreement
                       // lets only these fields reach Groningen.
                       const std::set<std::string> agreed = {
                           "bsn", "naam", "geboorte", "verblijfplaats",
                           "gemeente_van_inschrijving"};
                       std::vector<const google::protobuf::FieldDescriptor*> fields;
                       person.GetReflection()->ListFields(person, &fields);
                       std::vector<std::string> present;
                       bool only_agreed = true;
                       for (const auto* f : fields) {
                         present.push_back(f->name());
                         only_agreed = only_agreed && agreed.count(f->name()) > 0;
                       }
                       std::printf("        fields that arrived: %s\n",
                                   absl::StrJoin(present, ", ").c_str());
                       std::printf("        withheld by the gateway: ouders, partners, "
                                   "nationaliteiten, verblijfplaats_historie, indicaties "
                                   "(%s)\n",
                                   only_agreed ? "none of them arrived" : "!! some arrived");
                       return only_agreed && person.has_naam() && person.has_verblijfplaats();
                     }
                     return Expect(s, grpc::StatusCode::OK, "");
                   }});

  steps.push_back({"Gemeente Zaanstad's backoffice asks for the same person; Zaanstad has no "
                   "agreement with the BRP person service",
                   [] {
                     auto stub = Connect("zaanstad");
                     Envelope reply;
                     return Expect(Ask(*stub, PersonQuery(kZaanstadOin), &reply),
                                   grpc::StatusCode::PERMISSION_DENIED, "");
                   }});

  steps.push_back({"Zaanstad's backoffice tries again, posing as Groningen (envelope sender = "
                   "Groningen's OIN, certificate = Zaanstad's)",
                   [] {
                     auto stub = Connect("zaanstad");
                     Envelope reply;
                     return Expect(Ask(*stub, PersonQuery(kGroningenOin), &reply),
                                   grpc::StatusCode::PERMISSION_DENIED, "");
                   }});

  steps.push_back({"Someone with a certificate from an unknown CA, claiming Groningen's OIN, "
                   "connects to the gateway",
                   [] {
                     auto stub = Connect("foreign");
                     Envelope reply;
                     grpc::Status s = Ask(*stub, PersonQuery(kGroningenOin), &reply);
                     const bool refused = s.error_code() == grpc::StatusCode::UNAVAILABLE;
                     std::printf("     -> %s: refused at the TLS handshake, no request was read "
                                 "(%s)\n", Code(s).c_str(), s.error_message().c_str());
                     return refused;
                   }});

  steps.push_back({"Gemeente Amsterdam's old certificate was revoked (it is on the CA's CRL); "
                   "someone still holding it connects to the gateway",
                   [] {
                     auto stub = Connect("revoked");
                     Envelope reply;
                     grpc::Status s = Ask(*stub, PersonQuery("00000099300000000363"), &reply);
                     const bool refused = s.error_code() == grpc::StatusCode::UNAVAILABLE;
                     std::printf("     -> %s: the revoked certificate is refused at the TLS "
                                 "handshake (%s)\n", Code(s).c_str(), s.error_message().c_str());
                     return refused;
                   }});

  std::printf("\nKnooppunt demo: meldingen and bevragingen through the gateway at %s\n",
              absl::GetFlag(FLAGS_gateway).c_str());
  int passed = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    std::printf("\n  %zu. %s\n", i + 1, steps[i].title.c_str());
    std::fflush(stdout);
    if (steps[i].run()) ++passed;
    std::fflush(stdout);
  }
  SummariseDecisionLog(absl::GetFlag(FLAGS_decision_log));
  std::printf("\n  %d of %zu steps behaved as expected.\n\n", passed, steps.size());
  return passed == static_cast<int>(steps.size()) ? 0 : 1;
}
