#include "gateway/admin/admin_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gateway/common/log.h"
#include "gateway/policy/registered_caller.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::admin {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// "ORGANISATION_KIND_COLLECTIVE_SERVICE" → "collective_service".
std::string ShortName(absl::string_view full, absl::string_view prefix) {
  if (absl::StartsWith(full, prefix)) full.remove_prefix(prefix.size());
  return absl::AsciiStrToLower(full);
}

template <typename Set>
void AddSorted(const Set& set, google::protobuf::RepeatedPtrField<std::string>* out) {
  std::vector<std::string> v(set.begin(), set.end());
  std::sort(v.begin(), v.end());
  for (std::string& s : v) out->Add(std::move(s));
}

}  // namespace

absl::StatusOr<std::string> AuthoriseOperator(const grpc::AuthContext& auth,
                                              const policy::PolicyStore& policy,
                                              const identity::PeerAuthenticator& authenticator) {
  absl::StatusOr<policy::RegisteredCaller> who =
      policy::IdentifyCaller(auth, policy, authenticator);
  if (!who.ok()) return who.status();
  if (who->organisation->kind != config::v1::ORGANISATION_KIND_OPERATOR) {
    return absl::PermissionDeniedError(
        "the Admin service is for operator certificates only (separation of duties)");
  }
  return who->oin;
}

absl::StatusOr<std::string> AdminService::Admit(grpc::CallbackServerContext* context,
                                                absl::string_view method) const {
  absl::StatusOr<std::string> oin =
      AuthoriseOperator(*context->auth_context(), *policy_, *authenticator_);
  Log(oin.ok() ? LogLevel::kInfo : LogLevel::kWarning, "admin_call",
      {{"method", std::string(method)},
       {"caller", oin.ok() ? *oin : std::string()},
       {"result", oin.ok() ? std::string("allowed") : std::string(oin.status().message())}});
  return oin;
}

grpc::ServerUnaryReactor* AdminService::GetStatus(grpc::CallbackServerContext* context,
                                                  const v1::GetStatusRequest* /*request*/,
                                                  v1::GatewayStatus* reply) {
  absl::StatusOr<std::string> oin = Admit(context, "GetStatus");
  if (!oin.ok()) return Done(context, ToGrpc(oin.status()));
  reply->set_version(info_.version);
  reply->set_config_hash(info_.config_hash);
  reply->set_policy_version(policy_->Current()->version);
  reply->set_instance_id(info_.instance_id);
  *reply->mutable_started_at() = ToProto(info_.started_at);
  reply->set_uptime_seconds(absl::ToInt64Seconds(absl::Now() - info_.started_at));
  reply->set_draining(hooks_.draining ? hooks_.draining() : false);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::Reload(grpc::CallbackServerContext* context,
                                               const v1::ReloadRequest* /*request*/,
                                               v1::ReloadReply* reply) {
  absl::StatusOr<std::string> oin = Admit(context, "Reload");
  if (!oin.ok()) return Done(context, ToGrpc(oin.status()));
  if (!hooks_.reload) return Done(context, grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no reload"));
  const std::string previous = policy_->Current()->version;
  absl::Status s = hooks_.reload();
  if (!s.ok()) {
    return Done(context, grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                      absl::StrCat("policy rejected, old policy stays in force: ",
                                                   s.message())));
  }
  reply->set_previous_version(previous);
  reply->set_policy_version(policy_->Current()->version);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::ListOrganisations(
    grpc::CallbackServerContext* context, const v1::ListOrganisationsRequest* /*request*/,
    v1::ListOrganisationsReply* reply) {
  absl::StatusOr<std::string> oin = Admit(context, "ListOrganisations");
  if (!oin.ok()) return Done(context, ToGrpc(oin.status()));
  std::shared_ptr<const policy::PolicySnapshot> snapshot = policy_->Current();
  reply->set_policy_version(snapshot->version);
  for (const policy::Organisation& org : snapshot->registry.organisations()) {
    v1::Organisation* o = reply->add_organisations();
    o->set_oin(org.oin);
    o->set_name(org.name);
    o->set_kind(ShortName(config::v1::OrganisationKind_Name(org.kind), "ORGANISATION_KIND_"));
    o->set_gemeentecode(org.gemeentecode);
    o->set_endpoint_address(org.endpoint_address);
    for (const std::string& g : org.groups) o->add_groups(g);
  }
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::ListAgreements(grpc::CallbackServerContext* context,
                                                       const v1::ListAgreementsRequest* /*request*/,
                                                       v1::ListAgreementsReply* reply) {
  absl::StatusOr<std::string> oin = Admit(context, "ListAgreements");
  if (!oin.ok()) return Done(context, ToGrpc(oin.status()));
  std::shared_ptr<const policy::PolicySnapshot> snapshot = policy_->Current();
  reply->set_policy_version(snapshot->version);
  const absl::Time now = absl::Now();
  for (const policy::CompiledAgreement& a : snapshot->agreements.agreements()) {
    v1::Agreement* out = reply->add_agreements();
    out->set_id(a.id);
    out->set_message_type(a.message_type);
    out->set_mode(ShortName(config::v1::ExchangeMode_Name(a.mode), "EXCHANGE_MODE_"));
    AddSorted(a.senders, out->mutable_senders());
    AddSorted(a.recipients, out->mutable_recipients());
    AddSorted(a.purposes, out->mutable_purposes());
    if (a.valid_from != absl::InfinitePast()) *out->mutable_valid_from() = ToProto(a.valid_from);
    if (a.valid_until != absl::InfiniteFuture()) *out->mutable_valid_until() = ToProto(a.valid_until);
    out->set_in_force_now(a.valid_from <= now && now < a.valid_until);
    out->set_source(a.source);
  }
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::GetQueue(grpc::CallbackServerContext* context,
                                                 const v1::GetQueueRequest* /*request*/,
                                                 v1::QueueFigures* reply) {
  absl::StatusOr<std::string> oin = Admit(context, "GetQueue");
  if (!oin.ok()) return Done(context, ToGrpc(oin.status()));
  if (hooks_.queue) hooks_.queue(reply);
  return Done(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::Drain(grpc::CallbackServerContext* context,
                                              const v1::DrainRequest* /*request*/,
                                              v1::DrainReply* reply) {
  absl::StatusOr<std::string> oin = Admit(context, "Drain");
  if (!oin.ok()) return Done(context, ToGrpc(oin.status()));
  if (!hooks_.drain) return Done(context, grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no drain"));
  reply->set_already_draining(hooks_.drain());
  Log(LogLevel::kWarning, "draining", {{"caller", *oin}});
  return Done(context, grpc::Status::OK);
}

}  // namespace knooppunt::admin
