// knooppunt-party: a simulated organisation endpoint for the demo. It serves the Endpoint
// service over mutual TLS, accepts calls only from the gateway's certificate, and — when
// given a BRP register — answers person queries (gemeente.brp.v1.PersoonVraag) from it.
//
//   knooppunt-party --name=BRP --listen=127.0.0.1:18501 --cert=brp.crt --key=brp.key
//                   --ca=ca.crt --gateway_oin=<OIN> [--brp_register=brp-register.textproto]
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "google/protobuf/text_format.h"
#include "grpcpp/server_builder.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"
#include "tools/demo/demo_fixture.pb.h"

ABSL_FLAG(std::string, name, "party", "name printed in front of every line");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "host:port to serve on");
ABSL_FLAG(std::string, cert, "", "PEM certificate of this organisation");
ABSL_FLAG(std::string, key, "", "its private key");
ABSL_FLAG(std::string, ca, "", "CA bundle that the gateway's certificate chains to");
ABSL_FLAG(std::string, gateway_oin, "", "the only OIN allowed to call this endpoint");
ABSL_FLAG(std::string, brp_register, "", "textproto BrpRegister: answer person queries from it");
ABSL_FLAG(std::string, port_file, "", "write the port listened on to this file");

namespace {

using knooppunt::exchange::v1::Envelope;

std::string MaskBsn(const std::string& bsn) {
  return bsn.size() == 9 ? absl::StrCat("******", bsn.substr(6)) : "***";
}

std::string Metadata(const grpc::CallbackServerContext& ctx, const std::string& key) {
  auto it = ctx.client_metadata().find(key);
  return it == ctx.client_metadata().end() ? "" : std::string(it->second.data(), it->second.size());
}

class PartyEndpoint final : public knooppunt::exchange::v1::Endpoint::CallbackService {
 public:
  PartyEndpoint(std::string name, std::string gateway_oin,
                absl::flat_hash_map<std::string, gemeente::brp::v1::Persoon> register_)
      : name_(std::move(name)), gateway_oin_(std::move(gateway_oin)),
        register_(std::move(register_)) {}

  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const Envelope* request,
                                   Envelope* reply) override {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(Handle(*ctx, *request, reply));
    return reactor;
  }

  // A melding from the gateway: print what arrived and confirm receipt.
  grpc::ServerUnaryReactor* Deliver(grpc::CallbackServerContext* ctx, const Envelope* request,
                                    knooppunt::exchange::v1::DeliverResponse*) override {
    auto* reactor = ctx->DefaultReactor();
    absl::StatusOr<std::string> caller = authenticator_.Authenticate(*ctx->auth_context());
    if (!caller.ok() || *caller != gateway_oin_) {
      Print("refused a delivery that did not come from the gateway");
      reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "only the gateway may call"));
      return reactor;
    }
    gemeente::verhuizen::v1::Verhuismelding melding;
    if (request->payload().UnpackTo(&melding)) {
      const auto& a = melding.nieuw_adres();
      const auto& d = melding.datum_verhuizing();
      Print(absl::StrCat("received Verhuismelding ", request->message_id(), " from ",
                         request->sender(), " under agreement ",
                         Metadata(*ctx, "knooppunt-agreement-id"), ": BSN ",
                         MaskBsn(melding.bsn()), " moves to ", a.straat(), " ", a.huisnummer(),
                         ", ", a.postcode(), " ", a.woonplaats(), " on ", d.jaar(), "-",
                         d.maand(), "-", d.dag(), " with ", melding.meeverhuizenden_size(),
                         " other(s)"));
    } else {
      Print(absl::StrCat("received melding ", request->message_id(), " of type ",
                         request->payload().type_url(), " from ", request->sender()));
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  grpc::Status Handle(const grpc::CallbackServerContext& ctx, const Envelope& request,
                      Envelope* reply) {
    absl::StatusOr<std::string> caller = authenticator_.Authenticate(*ctx.auth_context());
    if (!caller.ok() || *caller != gateway_oin_) {
      Print("refused a call that did not come from the gateway");
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "only the gateway may call");
    }
    gemeente::brp::v1::PersoonVraag query;
    if (register_.empty() || !request.payload().UnpackTo(&query)) {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          absl::StrCat(name_, " answers no bevraging of this type"));
    }
    auto it = register_.find(query.bsn());
    Print(absl::StrCat("person query for BSN ", MaskBsn(query.bsn()), " from ",
                       Metadata(ctx, "knooppunt-sender-oin"), " under agreement ",
                       Metadata(ctx, "knooppunt-agreement-id"), ": ",
                       it == register_.end() ? "not found" : "answered"));
    if (it == register_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no person with this BSN");
    }
    reply->mutable_payload()->PackFrom(it->second);
    return grpc::Status::OK;
  }

  void Print(const std::string& line) {
    std::printf("  [%s] %s\n", name_.c_str(), line.c_str());
    std::fflush(stdout);
  }

  const std::string name_;
  const std::string gateway_oin_;
  const absl::flat_hash_map<std::string, gemeente::brp::v1::Persoon> register_;
  knooppunt::identity::PeerAuthenticator authenticator_;
};

absl::flat_hash_map<std::string, gemeente::brp::v1::Persoon> LoadRegister(const std::string& path) {
  absl::flat_hash_map<std::string, gemeente::brp::v1::Persoon> by_bsn;
  if (path.empty()) return by_bsn;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  knooppunt::demo::BrpRegister reg;
  if (!in || !google::protobuf::TextFormat::ParseFromString(text.str(), &reg)) {
    std::fprintf(stderr, "cannot read BRP register %s\n", path.c_str());
    std::exit(1);
  }
  for (const auto& p : reg.personen()) by_bsn[p.bsn()] = p;
  return by_bsn;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      knooppunt::tls::MutualTlsServerCredentials(
          {absl::GetFlag(FLAGS_cert), absl::GetFlag(FLAGS_key), absl::GetFlag(FLAGS_ca), ""});
  if (!creds.ok()) {
    std::fprintf(stderr, "%s\n", std::string(creds.status().message()).c_str());
    return 1;
  }
  PartyEndpoint service(absl::GetFlag(FLAGS_name), absl::GetFlag(FLAGS_gateway_oin),
                        LoadRegister(absl::GetFlag(FLAGS_brp_register)));
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), *creds, &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "cannot listen on %s\n", absl::GetFlag(FLAGS_listen).c_str());
    return 1;
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_port_file)) << port << "\n";
  }
  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
