// An in-process organisation endpoint for integration tests: serves
// knooppunt.exchange.v1.Endpoint over mutual TLS (with one of the dev PKI's party
// certificates) on 127.0.0.1:<free port>, answers as the test tells it to, and records what it
// received.
//
// Behaviour is a handler run for every call; it returns what to answer (status, reply
// envelope) and how long to wait before answering. A delayed answer never blocks a gRPC
// thread: it waits on its own thread, and a cancellation (the caller gave up, its deadline
// passed, or the endpoint is shutting down) ends the wait at once and finishes the call with
// CANCELLED. The endpoint records every call's envelope, the metadata the gateway adds
// (knooppunt-agreement-id, knooppunt-sender-oin, traceparent), the OIN of the calling
// certificate and the deadline it saw, and counts calls it saw cancelled before answering.
//
// Thread-safe. The destructor cancels pending delayed answers, stops the server and joins
// its threads.
#ifndef KNOOPPUNT_TESTS_TESTING_TEST_ENDPOINT_H_
#define KNOOPPUNT_TESTS_TESTING_TEST_ENDPOINT_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/server.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace knooppunt::testing {

// One call as the endpoint received it.
struct EndpointCall {
  exchange::v1::Envelope request;
  std::string agreement_id;  // metadata "knooppunt-agreement-id"
  std::string sender_oin;    // metadata "knooppunt-sender-oin"
  std::string traceparent;   // metadata "traceparent"
  std::string peer_oin;      // OIN in the caller's client certificate ("" if none/unusable)
  absl::Time received;
  absl::Time deadline = absl::InfiniteFuture();  // the call's deadline as the endpoint saw it
};

// What the endpoint answers.
struct EndpointReply {
  grpc::Status status = grpc::Status::OK;
  exchange::v1::Envelope envelope;  // sent only when status is OK
  absl::Duration delay = absl::ZeroDuration();

  // OK with `payload` packed into the reply envelope.
  static EndpointReply WithPayload(const google::protobuf::Message& payload);
  // A non-OK status.
  static EndpointReply WithStatus(grpc::StatusCode code, std::string message);
  // The same answer, given only after `delay` (or CANCELLED once the call is cancelled).
  EndpointReply After(absl::Duration d) const;
};

using EndpointHandler = std::function<EndpointReply(const EndpointCall&)>;

// The default behaviour: a gemeente.brp.v1.PersoonVraag is answered with a
// gemeente.brp.v1.Persoon for the BSN asked (name "Jansen"); anything else is UNIMPLEMENTED.
EndpointReply AnswerPersoonVraag(const EndpointCall& call);

class TestEndpoint {
 public:
  // Serves with PkiPath("<cert_stem>.crt"/".key"), requiring client certificates that chain
  // to PkiPath("ca.crt").
  static absl::StatusOr<std::unique_ptr<TestEndpoint>> Start(absl::string_view cert_stem);
  ~TestEndpoint();
  TestEndpoint(const TestEndpoint&) = delete;
  TestEndpoint& operator=(const TestEndpoint&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"

  // Replaces the behaviour for calls that arrive from now on.
  void SetHandler(EndpointHandler handler);
  // Back to AnswerPersoonVraag; forgets recorded calls and cancellations.
  void Reset();

  std::vector<EndpointCall> calls() const;
  int call_count() const;
  // Calls that were cancelled while their answer was still pending.
  int cancelled_count() const;
  // Waits (at most `timeout`) until at least n calls have arrived / were cancelled.
  bool WaitForCalls(int n, absl::Duration timeout) const;
  bool WaitForCancellations(int n, absl::Duration timeout) const;

 private:
  class Service;
  class Call;
  TestEndpoint() = default;

  void Record(const EndpointCall& call);
  EndpointHandler handler() const;
  void RunDelayed(std::thread thread);

  int port_ = 0;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  EndpointHandler handler_;
  std::vector<EndpointCall> calls_;
  int cancelled_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> delayed_threads_;
};

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_TESTING_TEST_ENDPOINT_H_
