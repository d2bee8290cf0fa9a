// knooppunt-admin: the operator's CLI for the gateway's Admin service (operator certificates
// only; see proto/knooppunt/admin/v1/admin.proto).
//   knooppunt-admin --gateway=HOST:PORT --gateway_oin=OIN --cert=operator.crt
//       --key=operator.key --ca=ca.crt status|reload|orgs|agreements|queue|drain
// Exit codes: 0 done, 1 the gateway refused or failed (the gRPC status is printed), 2 usage.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gateway/tls/credentials.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/create_channel.h"
#include "knooppunt/admin/v1/admin.grpc.pb.h"

ABSL_FLAG(std::string, gateway, "", "the gateway at HOST:PORT");
ABSL_FLAG(std::string, gateway_oin, "", "OIN the gateway's certificate must carry (required)");
ABSL_FLAG(std::string, cert, "", "operator client certificate (PEM)");
ABSL_FLAG(std::string, key, "", "its private key (PEM)");
ABSL_FLAG(std::string, ca, "", "CA bundle (PEM) the gateway's certificate must chain to");
ABSL_FLAG(int64_t, timeout_seconds, 10, "deadline of the call");

namespace {

namespace v1 = knooppunt::admin::v1;

int Usage(const std::string& why) {
  std::fprintf(stderr, "knooppunt-admin: %s\n%s\n", why.c_str(),
               "usage: knooppunt-admin --gateway=HOST:PORT --gateway_oin=OIN --cert=F --key=F "
               "--ca=F status|reload|orgs|agreements|queue|drain");
  return 2;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  *out = s.str();
  return !out->empty();
}

int Report(const grpc::Status& s) {
  if (s.ok()) return 0;
  std::fprintf(stderr, "knooppunt-admin: %d %s\n", static_cast<int>(s.error_code()),
               s.error_message().c_str());
  return 1;
}

std::string Time(const google::protobuf::Timestamp& t, const char* unset) {
  if (t.seconds() == 0 && t.nanos() == 0) return unset;
  return google::protobuf::util::TimeUtil::ToString(t);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "knooppunt-admin --gateway=HOST:PORT --gateway_oin=OIN --cert --key --ca status|reload|orgs|agreements|queue|drain");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) return Usage("exactly one command expected");
  const std::string command = args[1];
  if (absl::GetFlag(FLAGS_gateway).empty()) return Usage("--gateway is required");
  if (absl::GetFlag(FLAGS_gateway_oin).empty()) return Usage("--gateway_oin is required");
  std::string ca, cert, key;
  if (!ReadFile(absl::GetFlag(FLAGS_ca), &ca)) return Usage("--ca: cannot read");
  if (!ReadFile(absl::GetFlag(FLAGS_cert), &cert)) return Usage("--cert: cannot read");
  if (!ReadFile(absl::GetFlag(FLAGS_key), &key)) return Usage("--key: cannot read");
  auto stub = v1::Admin::NewStub(grpc::CreateChannel(
      absl::GetFlag(FLAGS_gateway),
      knooppunt::tls::MutualTlsChannelCredentials(ca, cert, key, absl::GetFlag(FLAGS_gateway_oin))));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(absl::GetFlag(FLAGS_timeout_seconds)));

  if (command == "status") {
    v1::GatewayStatus r;
    grpc::Status s = stub->GetStatus(&ctx, v1::GetStatusRequest(), &r);
    if (!s.ok()) return Report(s);
    std::printf("instance        %s\nversion         %s\nconfig_hash     %s\npolicy_version  %s\n"
                "started_at      %s\nuptime_seconds  %lld\ndraining        %s\n",
                r.instance_id().c_str(), r.version().c_str(), r.config_hash().c_str(),
                r.policy_version().c_str(), Time(r.started_at(), "-").c_str(),
                static_cast<long long>(r.uptime_seconds()), r.draining() ? "yes" : "no");
    return 0;
  }
  if (command == "reload") {
    v1::ReloadReply r;
    grpc::Status s = stub->Reload(&ctx, v1::ReloadRequest(), &r);
    if (!s.ok()) return Report(s);
    std::printf("policy_version  %s\nprevious        %s\n", r.policy_version().c_str(),
                r.previous_version().c_str());
    return 0;
  }
  if (command == "orgs") {
    v1::ListOrganisationsReply r;
    grpc::Status s = stub->ListOrganisations(&ctx, v1::ListOrganisationsRequest(), &r);
    if (!s.ok()) return Report(s);
    for (const v1::Organisation& o : r.organisations()) {
      std::printf("%s  %-18s %-4s %-32s %s [%s]\n", o.oin().c_str(), o.kind().c_str(),
                  o.gemeentecode().c_str(), o.name().c_str(),
                  o.endpoint_address().empty() ? "-" : o.endpoint_address().c_str(),
                  absl::StrJoin(o.groups(), ",").c_str());
    }
    return 0;
  }
  if (command == "agreements") {
    v1::ListAgreementsReply r;
    grpc::Status s = stub->ListAgreements(&ctx, v1::ListAgreementsRequest(), &r);
    if (!s.ok()) return Report(s);
    for (const v1::Agreement& a : r.agreements()) {
      std::printf("%s  %s %s %s  from=[%s] to=[%s] purposes=[%s] %s..%s  %s\n", a.id().c_str(),
                  a.in_force_now() ? "IN_FORCE" : "NOT_IN_FORCE", a.mode().c_str(),
                  a.message_type().c_str(), absl::StrJoin(a.senders(), ",").c_str(),
                  absl::StrJoin(a.recipients(), ",").c_str(),
                  absl::StrJoin(a.purposes(), ",").c_str(), Time(a.valid_from(), "").c_str(),
                  Time(a.valid_until(), "").c_str(), a.source().c_str());
    }
    return 0;
  }
  if (command == "queue") {
    v1::QueueFigures r;
    grpc::Status s = stub->GetQueue(&ctx, v1::GetQueueRequest(), &r);
    if (!s.ok()) return Report(s);
    std::printf("pending_messages  %llu\npending_bytes     %llu\n",
                static_cast<unsigned long long>(r.pending_messages()),
                static_cast<unsigned long long>(r.pending_bytes()));
    if (r.has_oldest_pending_age()) {
      std::printf("oldest_pending    %llds\n",
                  static_cast<long long>(r.oldest_pending_age().seconds()));
    }
    return 0;
  }
  if (command == "drain") {
    v1::DrainReply r;
    grpc::Status s = stub->Drain(&ctx, v1::DrainRequest(), &r);
    if (!s.ok()) return Report(s);
    std::printf(r.already_draining() ? "already draining\n" : "draining\n");
    return 0;
  }
  return Usage(absl::StrCat("unknown command ", command));
}
