// The melding operations of the Exchange service: Send, Receive, Ack, GetStatus.
//
//   Send: accept → authenticate → decide → (transform) → audit ‖ store (the decision record
//         and the MessageStore append — durable, idempotent — are committed concurrently) →
//         Receipt → deliver (DeliveryScheduler).
//
// Guarantees: a Receipt is returned only after the store reported the message durable AND its
// decision record is committed, and the message is then in the scheduler; a message whose
// decision record fails is discarded from the store and never delivered (after a crash
// between the two commits, StartMeldingen records the recovered messages before delivery). Receive/Ack/GetStatus
// act only for the authenticated caller: a recipient sees and acknowledges only messages
// addressed to it, GetStatus answers only the sender or the recipient (anyone else gets
// NOT_FOUND, so it does not learn that the message exists). No gRPC thread waits on a disk:
// each call's reactor is completed from the store's or the audit log's completion thread
// (and the Send's outcome record is written afterwards, in OnDone).
#include <openssl/evp.h>

#include <atomic>
#include <deque>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/common/ids.h"
#include "gateway/delivery/delivery_scheduler.h"
#include "gateway/exchange/exchange_service.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::exchange {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

// "The same content" for idempotency: what the sender asked to be delivered, to whom and
// why — not its creation time or trace, which a retrying client may renew.
std::string ContentHash(const v1::Envelope& e) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (const std::string* part : {&e.recipient(), &e.correlation_id(), &e.purpose(),
                                  &e.payload().type_url(), &e.payload().value()}) {
    const uint64_t n = part->size();
    EVP_DigestUpdate(ctx, &n, sizeof(n));
    EVP_DigestUpdate(ctx, part->data(), part->size());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<const char*>(digest), len);
}

grpc::Status NotConfigured() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "meldingen are not enabled on this gateway");
}

}  // namespace

// One Send, from arrival to Receipt. Deletes itself when gRPC reports the call done.
class MeldingCall final : public grpc::ServerUnaryReactor {
 public:
  MeldingCall(const ExchangeService& service, grpc::CallbackServerContext* context,
              const v1::Envelope* request, v1::Receipt* receipt)
      : service_(service), context_(context), request_(*request), receipt_(*receipt) {}

  void Start() {
    if (service_.store_ == nullptr || service_.delivery_ == nullptr) return Finish(NotConfigured());
    absl::Status decided = service_.admitter_.Decide(
        *context_, request_, config::v1::EXCHANGE_MODE_MELDING, "Send", &admission_);
    if (!decided.ok()) return Finish(ToGrpc(decided));
    admitted_ = true;

    // What will be delivered: the envelope as sent (with only the agreed fields), stamped
    // with the agreement and the gateway's span.
    auto envelope = std::make_shared<v1::Envelope>(request_);
    if (admission_.payload_filtered) {
      envelope->mutable_payload()->set_value(std::move(admission_.filtered_payload));
    }
    envelope->set_agreement_id(admission_.agreement->id);
    envelope->mutable_trace()->set_traceparent(FormatTraceparent(admission_.trace));
    envelope_ = envelope;

    store::MessageRecord record;
    record.sender = request_.sender();
    record.message_id = request_.message_id();
    record.recipient = admission_.recipient->oin;
    record.correlation_id = request_.correlation_id();
    record.agreement_id = admission_.agreement->id;
    record.content_hash = ContentHash(request_);
    record.envelope = envelope->SerializeAsString();
    // Microsecond precision, as stored: a duplicate's Receipt then equals the original's.
    record.accepted_at = absl::FromUnixMicros(absl::ToUnixMicros(absl::Now()));
    record.expires_at = record.accepted_at + admission_.agreement->retry_window;

    // audit and store, overlapped: the decision record's commit and the store's fsync run at
    // the same time (two files, two group commits), so a Receipt costs one disk flush of
    // latency, not two. Nothing is given to delivery and no Receipt is sent before both are
    // durable; a message stored whose decision record failed is discarded again.
    service_.admitter_.RecordDecision(admission_, [this](absl::Status audited) {
      audited_ = std::move(audited);
      if (BothArrived()) OnAuditedAndStored();
    });
    service_.store_->Append(std::move(record), [this](absl::StatusOr<store::AppendResult> stored) {
      stored_ = std::move(stored);
      if (BothArrived()) OnAuditedAndStored();
    });
  }

  void OnDone() override {
    // The outcome record is written here, on a gRPC thread, not on the store's writer
    // thread: the audit log may wait for its own fsync, and the store's group commit must
    // never wait for it.
    if (admitted_) service_.admitter_.RecordOutcome(&admission_, outcome_);
    delete this;
  }

 private:
  // True for the second of the two completions; acq_rel makes the first one's result
  // visible to the second.
  bool BothArrived() { return arrived_.fetch_add(1, std::memory_order_acq_rel) == 1; }

  // Runs on the completion thread (audit log or store) of whichever finished second.
  void OnAuditedAndStored() {
    if (!audited_.ok()) {
      if (stored_.ok() && !stored_->duplicate) {
        // Accepted by the store but not on record: take it back, so it is never delivered.
        service_.store_->Discard(stored_->record.seq, [](absl::Status) {});
      }
      return Complete(ToGrpc(audited_));
    }
    if (!stored_.ok()) return Complete(ToGrpc(stored_.status()));
    receipt_.set_message_id(request_.message_id());
    *receipt_.mutable_accepted_at() = ToTimestamp(stored_->record.accepted_at);
    receipt_.set_agreement_id(stored_->record.agreement_id);
    receipt_.set_duplicate(stored_->duplicate);
    // A message given to another replica (a shared store: that replica delivers the
    // conversation it belongs to) is not delivered here; its owner claims it.
    if (!stored_->duplicate && stored_->owned) {
      service_.delivery_->Enqueue(std::move(stored_->record), std::move(envelope_));
    }
    Complete(grpc::Status::OK);
  }

  void Complete(const grpc::Status& status) {
    outcome_ = status.error_code();
    Finish(status);
  }

  const ExchangeService& service_;
  grpc::CallbackServerContext* const context_;
  const v1::Envelope& request_;
  v1::Receipt& receipt_;
  Admission admission_;
  bool admitted_ = false;
  int outcome_ = grpc::StatusCode::CANCELLED;
  std::shared_ptr<const v1::Envelope> envelope_;

  // The two halves of acceptance, joined in OnAuditedAndStored().
  std::atomic<int> arrived_{0};
  absl::Status audited_;
  absl::StatusOr<store::AppendResult> stored_;
};

// One Receive stream: the recipient's inbox, fed by the DeliveryScheduler.
class InboxStream final : public grpc::ServerWriteReactor<v1::Envelope>,
                          public delivery::Consumer {
 public:
  InboxStream(const ExchangeService& service, grpc::CallbackServerContext* context,
              const v1::ReceiveRequest* request)
      : service_(service), context_(context), max_unacked_(request->max_unacknowledged()) {}

  void Start() {
    if (service_.store_ == nullptr || service_.delivery_ == nullptr) {
      return FinishOnce(NotConfigured());
    }
    absl::StatusOr<std::string> oin =
        service_.deps_.authenticator->Authenticate(*context_->auth_context());
    if (!oin.ok()) return FinishOnce(ToGrpc(oin.status()));
    if (service_.deps_.policy->Current()->registry.FindByOin(*oin) == nullptr) {
      return FinishOnce(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                     absl::StrCat(*oin, " is not a registered organisation")));
    }
    oin_ = *oin;
    {
      absl::MutexLock lock(&mu_);
      registered_ = true;
    }
    service_.delivery_->AddConsumer(oin_, this, max_unacked_);
  }

  // Called with the scheduler's lock held.
  void Offer(std::shared_ptr<const v1::Envelope> envelope) override {
    absl::MutexLock lock(&mu_);
    if (finished_) return;  // it stays invisible until its visibility timeout
    queue_.push_back(std::move(envelope));
    if (writing_) return;
    writing_ = true;
    StartWrite(queue_.front().get());
  }

  void Close() override {
    FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down"));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    queue_.pop_front();
    if (!ok || finished_ || queue_.empty()) {
      writing_ = false;
      return;
    }
    StartWrite(queue_.front().get());
  }

  void OnCancel() override {
    Unregister();
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    Unregister();
    delete this;
  }

 private:
  void Unregister() {
    bool was;
    {
      absl::MutexLock lock(&mu_);
      was = registered_;
      registered_ = false;
    }
    if (was) service_.delivery_->RemoveConsumer(oin_, this);
  }

  void FinishOnce(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  const ExchangeService& service_;
  grpc::CallbackServerContext* const context_;
  const uint32_t max_unacked_;
  std::string oin_;
  absl::Mutex mu_;
  std::deque<std::shared_ptr<const v1::Envelope>> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerUnaryReactor* ExchangeService::Send(grpc::CallbackServerContext* context,
                                                const v1::Envelope* request,
                                                v1::Receipt* receipt) {
  if (draining()) {
    grpc::ServerUnaryReactor* refused = context->DefaultReactor();
    refused->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
    return refused;
  }
  auto* call = new MeldingCall(*this, context, request, receipt);
  call->Start();
  return call;
}

grpc::ServerWriteReactor<v1::Envelope>* ExchangeService::Receive(
    grpc::CallbackServerContext* context, const v1::ReceiveRequest* request) {
  auto* stream = new InboxStream(*this, context, request);
  stream->Start();
  return stream;
}

grpc::ServerUnaryReactor* ExchangeService::Ack(grpc::CallbackServerContext* context,
                                               const v1::AckRequest* request,
                                               v1::AckResponse* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (store_ == nullptr || delivery_ == nullptr) {
    reactor->Finish(NotConfigured());
    return reactor;
  }
  absl::StatusOr<std::string> oin = deps_.authenticator->Authenticate(*context->auth_context());
  if (!oin.ok()) {
    reactor->Finish(ToGrpc(oin.status()));
    return reactor;
  }
  if (!IsValidOin(request->sender()) || !IsValidUuid(request->message_id())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "Ack needs the message's sender (OIN) and message_id (UUID)"));
    return reactor;
  }
  delivery_->Ack(*oin, request->sender(), request->message_id(),
                 [reactor](absl::Status s) { reactor->Finish(ToGrpc(s)); });
  return reactor;
}

grpc::ServerUnaryReactor* ExchangeService::GetStatus(grpc::CallbackServerContext* context,
                                                     const v1::StatusRequest* request,
                                                     v1::DeliveryStatus* reply) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (store_ == nullptr) {
    reactor->Finish(NotConfigured());
    return reactor;
  }
  absl::StatusOr<std::string> oin = deps_.authenticator->Authenticate(*context->auth_context());
  if (!oin.ok()) {
    reactor->Finish(ToGrpc(oin.status()));
    return reactor;
  }
  const std::string sender = request->sender().empty() ? *oin : request->sender();
  if (!IsValidOin(sender) || !IsValidUuid(request->message_id())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "GetStatus needs a message_id (UUID) and, if given, a sender OIN"));
    return reactor;
  }
  store_->Find(sender, request->message_id(),
               [reactor, reply, caller = *oin,
                id = request->message_id()](absl::StatusOr<store::MessageRecord> r) {
                 if (!r.ok() || (r->sender != caller && r->recipient != caller)) {
                   if (!r.ok() && !absl::IsNotFound(r.status())) {
                     return reactor->Finish(ToGrpc(r.status()));
                   }
                   return reactor->Finish(
                       grpc::Status(grpc::StatusCode::NOT_FOUND, "no such melding for you"));
                 }
                 reply->set_message_id(id);
                 reply->set_sender(r->sender);
                 reply->set_recipient(r->recipient);
                 reply->set_agreement_id(r->agreement_id);
                 switch (r->state) {
                   case store::MessageState::kAccepted:
                     reply->set_state(v1::DELIVERY_STATE_ACCEPTED);
                     break;
                   case store::MessageState::kDelivered:
                     reply->set_state(v1::DELIVERY_STATE_DELIVERED);
                     *reply->mutable_delivered_at() = ToTimestamp(r->delivered_at);
                     break;
                   case store::MessageState::kExpired:
                     reply->set_state(v1::DELIVERY_STATE_EXPIRED);
                     break;
                 }
                 *reply->mutable_accepted_at() = ToTimestamp(r->accepted_at);
                 if (r->expires_at != absl::InfiniteFuture()) {
                   *reply->mutable_expires_at() = ToTimestamp(r->expires_at);
                 }
                 reply->set_attempts(static_cast<uint32_t>(r->attempts));
                 reply->set_last_error(r->last_error);
                 reactor->Finish(grpc::Status::OK);
               });
  return reactor;
}

}  // namespace knooppunt::exchange
