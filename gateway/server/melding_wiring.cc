#include "gateway/server/melding_wiring.h"

#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/common/ids.h"
#include "gateway/common/log.h"
#include "gateway/exchange/envelope_check.h"
#include "google/protobuf/util/time_util.h"
#include "gateway/common/pg_config.h"
#include "gateway/store/pg_message_store.h"
#include "gateway/store/sqlite_message_store.h"

namespace knooppunt::server {
namespace {

absl::Duration Or(const google::protobuf::Duration& d, bool set, absl::Duration fallback) {
  if (!set) return fallback;
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

// The audit record of one event in a stored melding's delivery: who receives which message,
// when, under which agreement. The caller sets event, reason and grpc_status.
audit::v1::DecisionRecord DeliveryEventRecord(const MeldingDependencies& deps,
                                              const store::MessageRecord& header,
                                              const exchange::v1::Envelope& envelope,
                                              absl::Time at) {
  audit::v1::DecisionRecord r;
  *r.mutable_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(at));
  r.set_instance_id(deps.instance_id);
  const TraceIds trace = ContinueTrace(envelope.trace().traceparent());
  r.set_trace_id(trace.trace_id);
  r.set_span_id(trace.span_id);
  r.set_message_id(envelope.message_id());
  r.set_correlation_id(envelope.correlation_id());
  r.set_operation("Deliver");
  r.set_sender(envelope.sender());
  r.set_recipient(envelope.recipient());
  r.set_recipient_oin(header.recipient);
  const std::string type(exchange::MessageTypeOf(envelope.payload().type_url()));
  r.set_message_type(type);
  r.set_purpose(envelope.purpose());
  r.set_agreement_id(header.agreement_id);
  r.set_decision(audit::v1::DECISION_ALLOWED);
  r.set_payload_sha256(Sha256Hex(envelope.payload().value()));
  r.set_payload_bytes(static_cast<int64_t>(envelope.payload().value().size()));
  r.set_latency_us(absl::ToInt64Microseconds(at - header.accepted_at));
  if (deps.types != nullptr) {
    deps.decision_log->AddDataSubjects(deps.types->FindMessageTypeByName(type),
                                       envelope.payload().value(), &r);
  }
  return r;
}

// The record of one delivery attempt.
audit::v1::DecisionRecord DeliveryRecord(const MeldingDependencies& deps,
                                         const store::MessageRecord& header,
                                         const exchange::v1::Envelope& envelope,
                                         const grpc::Status& outcome) {
  audit::v1::DecisionRecord r = DeliveryEventRecord(
      deps, header, envelope, outcome.ok() ? header.delivered_at : absl::Now());
  if (outcome.ok()) {
    r.set_reason(absl::StrCat("delivered after ", header.attempts, " attempt(s)"));
    r.set_event("delivered");
  } else {
    r.set_reason(absl::StrCat("delivery attempt ", header.attempts,
                              " failed; retried until the retry window ends"));
    r.set_event("delivery_failed");
  }
  r.set_grpc_status(outcome.error_code());
  return r;
}

// A Send's decision record and its store append are committed concurrently (melding_calls):
// after a crash between the two, a stored message may lack its decision record. So before
// delivery resumes, every message the scheduler claims from the store — recovered after a
// restart, or taken over from a stopped replica — is put on record again ("resumed"); the
// gateway does not start when that fails (fail closed), and later claims wait for it.
absl::Status RecordResumed(const MeldingDependencies& deps,
                           const std::vector<store::MessageRecord>& pending) {
  if (deps.decision_log == nullptr || pending.empty()) return absl::OkStatus();
  absl::Mutex mu;
  size_t outstanding = pending.size();
  absl::Status first_error;
  const absl::Time now = absl::Now();
  for (const store::MessageRecord& header : pending) {
    exchange::v1::Envelope envelope;
    if (!envelope.ParseFromString(header.envelope)) {
      return absl::DataLossError(absl::StrCat("melding store: stored envelope of seq ",
                                              header.seq, " does not parse"));
    }
    audit::v1::DecisionRecord r = DeliveryEventRecord(deps, header, envelope, now);
    r.set_event("resumed");
    r.set_reason(absl::StrCat("accepted earlier (before a restart, by a gateway that "
                              "stopped, or by another replica for a conversation this one "
                              "delivers); delivery resumes after ", header.attempts,
                              " attempt(s)"));
    deps.decision_log->RecordAsync(r, [&](absl::Status s) {
      absl::MutexLock lock(&mu);
      if (!s.ok() && first_error.ok()) first_error = s;
      --outstanding;
    });
  }
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](size_t* n) { return *n == 0; }, &outstanding));
  if (!first_error.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot record the meldingen recovered from the store: ", first_error.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status StartMeldingen(const config::v1::MeldingConfig& config,
                            const MeldingDependencies& deps, Meldingen* out) {
  const policy::PolicyStore* policy = deps.policy;
  delivery::DeliveryOptions options;
  std::string store_name;  // for the log
  if (config.has_postgres()) {
    // Replicas sharing one PostgreSQL database (gateway/store/pg_message_store.h).
    const config::v1::PostgresConfig& pg_config = config.postgres();
    if (pg_config.conninfo().empty()) {
      return absl::InvalidArgumentError(
          "melding.postgres.conninfo is required (a libpq connection string, e.g. "
          "\"host=db.example.nl dbname=knooppunt user=knooppunt_writer\")");
    }
    if (deps.instance_id.empty()) {
      return absl::InvalidArgumentError(
          "instance_id is required with melding.postgres: it names this replica, the owner "
          "of the meldingen it delivers (unique per replica, stable across restarts)");
    }
    store::PgStoreOptions pg_options;
    absl::StatusOr<pg::ConnectOptions> connect =
        pg::ConnectOptionsFromConfig(pg_config, absl::StrCat(deps.instance_id, "/meldingen"));
    if (!connect.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("melding.postgres.password_file: ", connect.status().message()));
    }
    pg_options.connect = *std::move(connect);
    pg_options.instance_id = deps.instance_id;
    pg_options.lease = Or(config.replica_lease(), config.has_replica_lease(), pg_options.lease);
    if (pg_options.lease < absl::Seconds(1)) {
      return absl::InvalidArgumentError("melding.replica_lease must be at least 1s");
    }
    if (config.max_pending_messages() > 0) {
      pg_options.max_pending_messages = config.max_pending_messages();
    }
    if (config.max_pending_bytes() > 0) pg_options.max_pending_bytes = config.max_pending_bytes();
    pg_options.retain_final =
        Or(config.retain_final(), config.has_retain_final(), pg_options.retain_final);
    absl::StatusOr<std::unique_ptr<store::PgMessageStore>> opened =
        store::PgMessageStore::Open(pg_options);
    if (!opened.ok()) return opened.status();
    out->store = *std::move(opened);
    // The lease is renewed at every claim: three claims per lease.
    options.claim_interval = pg_options.lease / 3;
    store_name = "postgres";
  } else {
    store::SqliteStoreOptions store_options;
    store_options.path = config.store_path().empty() ? "meldingen.db" : config.store_path();
    if (config.max_pending_messages() > 0) {
      store_options.max_pending_messages = config.max_pending_messages();
    }
    if (config.max_pending_bytes() > 0) {
      store_options.max_pending_bytes = config.max_pending_bytes();
    }
    store_options.retain_final =
        Or(config.retain_final(), config.has_retain_final(), store_options.retain_final);
    absl::StatusOr<std::unique_ptr<store::SqliteMessageStore>> opened =
        store::SqliteMessageStore::Open(store_options);
    if (!opened.ok()) return opened.status();
    out->store = *std::move(opened);
    store_name = store_options.path;
  }

  if (config.max_in_flight_per_recipient() > 0) {
    options.max_in_flight_per_recipient = config.max_in_flight_per_recipient();
  }
  options.initial_backoff =
      Or(config.initial_backoff(), config.has_initial_backoff(), options.initial_backoff);
  options.max_backoff = Or(config.max_backoff(), config.has_max_backoff(), options.max_backoff);
  options.attempt_timeout =
      Or(config.attempt_timeout(), config.has_attempt_timeout(), options.attempt_timeout);
  options.visibility_timeout =
      Or(config.visibility_timeout(), config.has_visibility_timeout(), options.visibility_timeout);

  // The route is looked up in the policy in force at every attempt.
  auto routes = [policy](const std::string& oin) {
    delivery::Route route;
    std::shared_ptr<const policy::PolicySnapshot> snapshot = policy->Current();
    const policy::Organisation* org = snapshot->registry.FindByOin(oin);
    if (org != nullptr && !org->endpoint_address.empty()) {
      route.push = true;
      route.target = {org->oin, org->endpoint_address, org->tls_server_name};
    }
    return route;
  };
  out->delivery = std::make_unique<delivery::DeliveryScheduler>(
      out->store.get(), deps.endpoints, routes, options);
  if (deps.decision_log != nullptr || deps.metrics != nullptr) {
    out->delivery->set_attempt_hook([deps](const store::MessageRecord& header,
                                           const exchange::v1::Envelope& envelope,
                                           const grpc::Status& outcome) {
      if (deps.metrics != nullptr) deps.metrics->OnDeliveryAttempt(outcome.error_code());
      if (deps.decision_log == nullptr) return;
      deps.decision_log->RecordAsync(DeliveryRecord(deps, header, envelope, outcome), nullptr);
    });
  }
  out->delivery->set_claim_hook([deps](const std::vector<store::MessageRecord>& claimed) {
    return RecordResumed(deps, claimed);
  });
  if (absl::Status started = out->delivery->Start(); !started.ok()) return started;
  const size_t recovered = out->delivery->pending();
  deps.exchange->AttachMeldingen(out->store.get(), out->delivery.get());
  Log(LogLevel::kInfo, "melding_store_open",
      {{"path", store_name}, {"pending", absl::StrCat(recovered)}});
  return absl::OkStatus();
}

void StopMeldingen(Meldingen* meldingen) {
  if (meldingen->delivery) meldingen->delivery->Stop();
  if (meldingen->store) meldingen->store->Close();
}

}  // namespace knooppunt::server
