// knooppunt-health: asks a running gateway for its grpc.health.v1 status over mutual TLS, for
// probes that cannot present a client certificate themselves (a kubelet gRPC probe, systemd,
// a load balancer's script check).
//   knooppunt-health --config=/etc/knooppunt/gateway.yaml [--service=NAME] [--timeout_seconds=3]
// With --config the gateway's own configuration says everything: the port (`listen`, asked on
// the loopback address), the OIN the gateway's certificate must carry (read from
// tls.cert_file), the client certificate presented (upstream_tls.cert_file/key_file, which
// the gateway also presents to endpoints) and the CAs trusted (tls.client_ca_file and
// upstream_tls.ca_file). Each can be overridden: --gateway=HOST:PORT, --gateway_oin, --cert,
// --key, --ca. The health service accepts any certificate from a trusted CA (no OIN in the
// registry needed).
// Exit codes: 0 SERVING (with --any_status: any answer), 1 anything else (NOT_SERVING,
// unreachable, refused; printed), 2 usage.
#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/files.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/server/gateway_config.h"
#include "gateway/tls/credentials.h"
#include "google/protobuf/wrappers.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/impl/codegen/proto_utils.h"

ABSL_FLAG(std::string, config, "", "the gateway's gateway.yaml (supplies everything below)");
ABSL_FLAG(std::string, gateway, "", "HOST:PORT (default: loopback and the port of `listen`)");
ABSL_FLAG(std::string, gateway_oin, "", "OIN the gateway's certificate must carry");
ABSL_FLAG(std::string, cert, "", "client certificate (PEM) from a CA the gateway trusts");
ABSL_FLAG(std::string, key, "", "its private key (PEM)");
ABSL_FLAG(std::string, ca, "", "CA bundle (PEM) the gateway's certificate must chain to");
ABSL_FLAG(std::string, service, "", "service to ask about; empty: the gateway as a whole");
ABSL_FLAG(int64_t, timeout_seconds, 3, "deadline of the check");
ABSL_FLAG(bool, any_status, false,
          "exit 0 whenever the health service answers, also NOT_SERVING (a liveness probe: "
          "the process is alive; a full disk or a draining gateway is not cured by a restart)");

namespace {

int Usage(const std::string& why) {
  std::fprintf(stderr, "knooppunt-health: %s\nusage: knooppunt-health --config=gateway.yaml "
               "[--gateway=HOST:PORT --gateway_oin=OIN --cert=F --key=F --ca=F] [--service=S]\n",
               why.c_str());
  return 2;
}

// "0.0.0.0:8443" -> "127.0.0.1:8443", "[::]:8443" -> "[::1]:8443"; a named host is kept.
std::string LoopbackTarget(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return listen;
  const std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.empty() || host == "0.0.0.0" || host == "*") return absl::StrCat("127.0.0.1:", port);
  if (host == "[::]" || host == "::") return absl::StrCat("[::1]:", port);
  return listen;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("knooppunt-health --config=gateway.yaml [--service=S]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 1) return Usage("no positional arguments expected");

  std::string target = absl::GetFlag(FLAGS_gateway);
  std::string oin = absl::GetFlag(FLAGS_gateway_oin);
  std::string cert_file = absl::GetFlag(FLAGS_cert);
  std::string key_file = absl::GetFlag(FLAGS_key);
  std::string ca_pem;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::StatusOr<knooppunt::config::v1::GatewayConfig> config =
        knooppunt::server::LoadGatewayConfig(absl::GetFlag(FLAGS_config));
    if (!config.ok()) return Usage(std::string(config.status().message()));
    if (target.empty()) target = LoopbackTarget(config->listen());
    if (cert_file.empty()) cert_file = config->upstream_tls().cert_file();
    if (key_file.empty()) key_file = config->upstream_tls().key_file();
    if (oin.empty()) {
      absl::StatusOr<std::string> pem =
          knooppunt::tls::ReadPemFile(config->tls().cert_file(), "gateway certificate");
      if (!pem.ok()) return Usage(std::string(pem.status().message()));
      absl::StatusOr<std::string> own = knooppunt::identity::OinFromCertificatePem(*pem);
      if (!own.ok()) return Usage(absl::StrCat("gateway certificate: ", own.status().message()));
      oin = *own;
    }
    if (absl::GetFlag(FLAGS_ca).empty()) {
      for (const std::string& f : {config->tls().client_ca_file(), config->upstream_tls().ca_file()}) {
        absl::StatusOr<std::string> pem = knooppunt::tls::ReadPemFile(f, "CA file");
        if (!pem.ok()) return Usage(std::string(pem.status().message()));
        absl::StrAppend(&ca_pem, *pem, absl::EndsWith(*pem, "\n") ? "" : "\n");
      }
    }
  }
  if (!absl::GetFlag(FLAGS_ca).empty()) {
    absl::StatusOr<std::string> pem = knooppunt::tls::ReadPemFile(absl::GetFlag(FLAGS_ca), "--ca");
    if (!pem.ok()) return Usage(std::string(pem.status().message()));
    ca_pem = *pem;
  }
  if (target.empty()) return Usage("--config or --gateway is required");
  if (oin.empty()) return Usage("--config or --gateway_oin is required");
  if (ca_pem.empty()) return Usage("--config or --ca is required");
  absl::StatusOr<std::string> cert = knooppunt::tls::ReadPemFile(cert_file, "client certificate");
  if (!cert.ok()) return Usage(std::string(cert.status().message()));
  absl::StatusOr<std::string> key = knooppunt::tls::ReadPemFile(key_file, "client key");
  if (!key.ok()) return Usage(std::string(key.status().message()));

  // grpc.health.v1.HealthCheckRequest {string service = 1} and HealthCheckResponse
  // {ServingStatus status = 1} have the wire format of StringValue and Int32Value, so no
  // copy of health.proto is needed here.
  grpc::TemplatedGenericStub<google::protobuf::StringValue, google::protobuf::Int32Value> stub(
      grpc::CreateChannel(target,
                          knooppunt::tls::MutualTlsChannelCredentials(ca_pem, *cert, *key, oin)));
  google::protobuf::StringValue request;
  request.set_value(absl::GetFlag(FLAGS_service));
  google::protobuf::Int32Value response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) {
    std::fprintf(stderr, "knooppunt-health: %s: the call did not complete\n", target.c_str());
    return 1;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "knooppunt-health: %s: %d %s\n", target.c_str(),
                 static_cast<int>(status.error_code()), status.error_message().c_str());
    return 1;
  }
  static const char* const kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  const int s = response.value();
  const char* name = (s >= 0 && s <= 3) ? kNames[s] : "?";
  std::printf("%s %s\n", target.c_str(), name);
  return (s == 1 || absl::GetFlag(FLAGS_any_status)) ? 0 : 1;
}
