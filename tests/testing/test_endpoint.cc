#include "tests/testing/test_endpoint.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "grpcpp/server_builder.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;

std::string Metadata(const grpc::CallbackServerContext& ctx, absl::string_view key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
}

std::string PeerOin(const grpc::CallbackServerContext& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr) return "";
  const std::vector<grpc::string_ref> certs = auth->FindPropertyValues("x509_pem_cert");
  if (certs.empty()) return "";
  absl::StatusOr<std::string> oin = identity::OinFromCertificatePem(
      absl::string_view(certs.front().data(), certs.front().size()));
  return oin.ok() ? *oin : "";
}

}  // namespace

EndpointReply EndpointReply::WithPayload(const google::protobuf::Message& payload) {
  EndpointReply reply;
  reply.envelope.mutable_payload()->PackFrom(payload);
  return reply;
}

EndpointReply EndpointReply::WithStatus(grpc::StatusCode code, std::string message) {
  EndpointReply reply;
  reply.status = grpc::Status(code, std::move(message));
  return reply;
}

EndpointReply EndpointReply::After(absl::Duration d) const {
  EndpointReply reply = *this;
  reply.delay = d;
  return reply;
}

EndpointReply AnswerPersoonVraag(const EndpointCall& call) {
  gemeente::brp::v1::PersoonVraag vraag;
  if (!call.request.payload().UnpackTo(&vraag)) {
    return EndpointReply::WithStatus(grpc::StatusCode::UNIMPLEMENTED,
                                     "this test endpoint answers only PersoonVraag");
  }
  gemeente::brp::v1::Persoon persoon;
  persoon.set_bsn(vraag.bsn());
  persoon.mutable_naam()->set_voornamen("Pieter");
  persoon.mutable_naam()->set_geslachtsnaam("Jansen");
  persoon.set_gemeente_van_inschrijving("0014");
  return EndpointReply::WithPayload(persoon);
}

class TestEndpoint::Service final : public exchange::v1::Endpoint::CallbackService {
 public:
  explicit Service(TestEndpoint* owner) : owner_(owner) {}
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context, const Envelope* request,
                                   Envelope* reply) override;

 private:
  TestEndpoint* const owner_;
};

// One call. Finish() is called exactly once: inline for an immediate answer, or by the
// call's own thread for a delayed one (never by OnCancel, so the thread owns the reactor
// until it has finished it). gRPC deletes nothing; OnDone (after Finish) deletes this.
class TestEndpoint::Call final : public grpc::ServerUnaryReactor {
 public:
  Call(TestEndpoint* owner, grpc::CallbackServerContext* context, const Envelope* request,
       Envelope* reply)
      : owner_(owner), context_(context), request_(*request), reply_(*reply) {}

  void Begin() {
    EndpointCall call;
    call.request = request_;
    call.agreement_id = Metadata(*context_, "knooppunt-agreement-id");
    call.sender_oin = Metadata(*context_, "knooppunt-sender-oin");
    call.traceparent = Metadata(*context_, "traceparent");
    call.peer_oin = PeerOin(*context_);
    call.received = absl::Now();
    const auto deadline = context_->deadline();
    call.deadline = deadline == std::chrono::system_clock::time_point::max()
                        ? absl::InfiniteFuture()
                        : absl::FromChrono(deadline);
    owner_->Record(call);
    EndpointReply answer = owner_->handler()(call);

    if (answer.delay <= absl::ZeroDuration()) {
      {
        std::lock_guard<std::mutex> lock(owner_->mu_);
        answered_ = true;
      }
      Deliver(answer);
      return;
    }
    const absl::Time due = absl::Now() + answer.delay;
    owner_->RunDelayed(std::thread([this, due, answer = std::move(answer)] {
      TestEndpoint* const owner = owner_;
      bool cancelled = false;
      {
        std::unique_lock<std::mutex> lock(owner->mu_);
        while (!cancelled_ && !owner->stopping_ && absl::Now() < due) {
          owner->changed_.wait_for(lock, absl::ToChronoNanoseconds(due - absl::Now()));
        }
        cancelled = cancelled_ || owner->stopping_;
        answered_ = true;
      }
      if (cancelled) {
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled"));
      } else {
        Deliver(answer);
      }
      // `this` may be gone now (OnDone).
    }));
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(owner_->mu_);
    if (!answered_ && !cancelled_) {
      cancelled_ = true;
      ++owner_->cancelled_;
    }
    owner_->changed_.notify_all();
  }

  void OnDone() override { delete this; }

 private:
  void Deliver(const EndpointReply& answer) {
    if (answer.status.ok()) reply_ = answer.envelope;
    Finish(answer.status);
  }

  TestEndpoint* const owner_;
  grpc::CallbackServerContext* const context_;
  const Envelope& request_;
  Envelope& reply_;
  bool answered_ = false;   // guarded by owner_->mu_
  bool cancelled_ = false;  // guarded by owner_->mu_
};

grpc::ServerUnaryReactor* TestEndpoint::Service::Answer(grpc::CallbackServerContext* context,
                                                        const Envelope* request, Envelope* reply) {
  auto* call = new Call(owner_, context, request, reply);
  call->Begin();
  return call;
}

absl::StatusOr<std::unique_ptr<TestEndpoint>> TestEndpoint::Start(absl::string_view cert_stem) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::MutualTlsServerCredentials({PkiPath(absl::StrCat(cert_stem, ".crt")),
                                       PkiPath(absl::StrCat(cert_stem, ".key")), PkiPath("ca.crt"),
                                       "", absl::Seconds(60)});
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<TestEndpoint> endpoint(new TestEndpoint());
  endpoint->handler_ = AnswerPersoonVraag;
  endpoint->service_ = std::make_unique<Service>(endpoint.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", *credentials, &endpoint->port_);
  builder.RegisterService(endpoint->service_.get());
  endpoint->server_ = builder.BuildAndStart();
  if (endpoint->server_ == nullptr || endpoint->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("test endpoint (", cert_stem, ") cannot listen on 127.0.0.1"));
  }
  return endpoint;
}

TestEndpoint::~TestEndpoint() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    server_->Wait();
  }
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(delayed_threads_);
  }
  for (std::thread& t : threads) t.join();
}

std::string TestEndpoint::address() const { return absl::StrCat("127.0.0.1:", port_); }

void TestEndpoint::SetHandler(EndpointHandler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = std::move(handler);
}

void TestEndpoint::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = AnswerPersoonVraag;
  calls_.clear();
  cancelled_ = 0;
}

std::vector<EndpointCall> TestEndpoint::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

int TestEndpoint::call_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(calls_.size());
}

int TestEndpoint::cancelled_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool TestEndpoint::WaitForCalls(int n, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [&] { return static_cast<int>(calls_.size()) >= n; });
}

bool TestEndpoint::WaitForCancellations(int n, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [&] { return cancelled_ >= n; });
}

void TestEndpoint::Record(const EndpointCall& call) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_.push_back(call);
  changed_.notify_all();
}

EndpointHandler TestEndpoint::handler() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handler_;
}

void TestEndpoint::RunDelayed(std::thread thread) {
  std::lock_guard<std::mutex> lock(mu_);
  delayed_threads_.push_back(std::move(thread));
}

}  // namespace knooppunt::testing
