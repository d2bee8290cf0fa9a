#include "gateway/audit/auditor_service.h"

#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/common/log.h"
#include "gateway/policy/registered_caller.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::audit {
namespace {

constexpr int64_t kPage = 256;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

bool LooksLikeBsn(absl::string_view s) {
  if (s.size() < 8 || s.size() > 9) return false;
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(google::protobuf::util::TimeUtil::TimestampToNanoseconds(t));
}

class QueryStream final : public grpc::ServerWriteReactor<v1::AuditEntry> {
 public:
  QueryStream(std::unique_ptr<AuditReader> reader, QueryFilter filter)
      : reader_(std::move(reader)), filter_(std::move(filter)), remaining_(filter_.limit) {
    Next();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (page_.empty() && !exhausted_) Fill();
    if (!status_.ok()) return Finish(ToGrpc(status_));
    if (page_.empty()) return Finish(grpc::Status::OK);
    current_ = std::move(page_.front());
    page_.pop_front();
    StartWrite(&current_);
  }
  void Fill() {
    QueryFilter f = filter_;
    f.limit = remaining_ > 0 ? std::min(remaining_, kPage) : kPage;
    int64_t got = 0;
    status_ = reader_->Query(f, [&](const AuditEntry& e) {
      v1::AuditEntry out;
      out.set_seq(e.seq);
      *out.mutable_record() = e.record;
      out.set_hash(ToHex(e.hash));
      page_.push_back(std::move(out));
      filter_.after_seq = e.seq;
      filter_.after_chain = e.chain;
      filter_.after_time_ns = e.time_ns;
      ++got;
      return true;
    });
    if (filter_.limit > 0) {
      remaining_ -= got;
      if (remaining_ <= 0) exhausted_ = true;
    }
    if (got < f.limit) exhausted_ = true;
  }

  std::unique_ptr<AuditReader> reader_;
  QueryFilter filter_;
  int64_t remaining_;
  bool exhausted_ = false;
  absl::Status status_;
  std::deque<v1::AuditEntry> page_;
  v1::AuditEntry current_;
};

class Refused final : public grpc::ServerWriteReactor<v1::AuditEntry> {
 public:
  explicit Refused(grpc::Status s) { Finish(std::move(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::StatusOr<AuditorService::Caller> AuditorService::Authorise(
    const grpc::CallbackServerContext& context) const {
  absl::StatusOr<policy::RegisteredCaller> who =
      policy::IdentifyCaller(*context.auth_context(), *policy_, *authenticator_);
  if (!who.ok()) return who.status();
  Caller caller;
  caller.oin = who->oin;
  switch (who->organisation->kind) {
    case config::v1::ORGANISATION_KIND_AUDITOR:
      caller.role = Role::kAuditor;
      break;
    case config::v1::ORGANISATION_KIND_OPERATOR:
      return absl::PermissionDeniedError(
          "operator certificates cannot read audit records (separation of duties)");
    default:
      caller.role = Role::kParty;
      break;
  }
  return caller;
}

grpc::ServerWriteReactor<v1::AuditEntry>* AuditorService::Query(
    grpc::CallbackServerContext* context, const v1::QueryRequest* request) {
  absl::StatusOr<Caller> caller = Authorise(*context);
  if (!caller.ok()) return new Refused(ToGrpc(caller.status()));
  if (LooksLikeBsn(request->data_subject())) {
    return new Refused(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        "data_subject must be the pseudonym of a BSN (knooppunt-audit pseudonym), not a BSN"));
  }
  QueryFilter f;
  if (request->has_from()) f.from = FromProto(request->from());
  if (request->has_until()) f.until = FromProto(request->until());
  f.sender = request->sender();
  f.recipient = request->recipient();
  f.message_type = request->message_type();
  f.agreement_id = request->agreement_id();
  f.decision = request->decision();
  f.trace_id = request->trace_id();
  f.data_subject = request->data_subject();
  f.limit = request->limit();
  if (caller->role != Role::kAuditor) f.party_oin = caller->oin;
  absl::StatusOr<std::unique_ptr<AuditReader>> reader = open_reader_();
  if (!reader.ok()) return new Refused(ToGrpc(reader.status()));
  Log(LogLevel::kInfo, "audit_query",
      {{"caller", caller->oin}, {"role", caller->role == Role::kAuditor ? "auditor" : "party"}});
  return new QueryStream(*std::move(reader), std::move(f));
}

grpc::ServerUnaryReactor* AuditorService::Verify(grpc::CallbackServerContext* context,
                                                 const v1::VerifyRequest* request,
                                                 v1::VerifyReply* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Caller> caller = Authorise(*context);
  if (!caller.ok()) {
    reactor->Finish(ToGrpc(caller.status()));
    return reactor;
  }
  if (caller->role != Role::kAuditor) {
    reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                 "only auditor certificates may verify the audit log"));
    return reactor;
  }
  absl::StatusOr<std::unique_ptr<AuditReader>> reader = open_reader_();
  if (!reader.ok()) {
    reactor->Finish(ToGrpc(reader.status()));
    return reactor;
  }
  absl::StatusOr<VerifyResult> result = (*reader)->Verify(*key_);
  if (!result.ok()) {
    reactor->Finish(ToGrpc(result.status()));
    return reactor;
  }
  reply->set_intact(result->intact);
  reply->set_records(result->records);
  reply->set_checkpoints(result->checkpoints);
  reply->set_first_bad_seq(result->first_bad_seq);
  reply->set_problem(result->problem);
  reply->set_unsigned_tail(result->unsigned_tail);
  Log(LogLevel::kInfo, "audit_verify",
      {{"caller", caller->oin}, {"intact", result->intact ? "true" : "false"}});
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace knooppunt::audit
