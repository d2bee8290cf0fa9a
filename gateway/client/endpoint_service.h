// The endpoint side of a party: a base class for answering bevragingen (Endpoint.Answer) and
// receiving meldingen (Endpoint.Deliver), and EndpointServer, which serves it with mutual TLS.
//
// Guarantees:
// - EndpointServer requires a client certificate that chains to the configured CA and
//   carries the gateway's OIN; any other caller gets PERMISSION_DENIED before a handler runs.
// - Handlers get the envelope and the call metadata the gateway adds (agreement id, the
//   authenticated sender's OIN, traceparent). A handler is called once per call; each call is
//   finished exactly once with what the handler returns (or passes to `done`).
// - It uses gRPC's callback API: no thread is held per call. The synchronous handlers
//   (Answer, Deliver) run on gRPC's callback threads, so they should be quick; one that must
//   wait (a database, another service) overrides AnswerAsync / DeliverAsync instead and calls
//   `done` from wherever the result arrives.
// - Deliver may see the same melding more than once (delivery is at least once): deduplicate
//   on envelope sender + message_id, and return OK only when the melding is safely stored.
#ifndef KNOOPPUNT_GATEWAY_CLIENT_ENDPOINT_SERVICE_H_
#define KNOOPPUNT_GATEWAY_CLIENT_ENDPOINT_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/server.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace knooppunt::client {

// What the gateway tells an endpoint about a call.
struct IncomingCall {
  std::string agreement_id;  // metadata "knooppunt-agreement-id": the agreement that allowed it
  std::string sender_oin;    // metadata "knooppunt-sender-oin": who asked / sent
  std::string traceparent;   // metadata "traceparent": the gateway's span, for your logs
  std::string caller_oin;    // OIN of the calling certificate (always the gateway's)
  absl::Time deadline = absl::InfiniteFuture();
};

class EndpointService {
 public:
  using AnswerDone = std::function<void(absl::StatusOr<exchange::v1::Envelope>)>;
  using DeliverDone = std::function<void(absl::Status)>;

  virtual ~EndpointService() = default;

  // A bevraging: return an envelope whose payload is the agreement's reply type (the gateway
  // fills in the header fields). An error status goes to the asking party as it is, marked
  // as coming from the endpoint. Default: UNIMPLEMENTED.
  virtual absl::StatusOr<exchange::v1::Envelope> Answer(const IncomingCall& call,
                                                        const exchange::v1::Envelope& request);

  // A melding: OK once it is safely stored; an error makes the gateway retry later.
  // Default: UNIMPLEMENTED.
  virtual absl::Status Deliver(const IncomingCall& call, const exchange::v1::Envelope& melding);

  // Asynchronous forms; the defaults call the synchronous ones. `done` must be called exactly
  // once, from any thread.
  virtual void AnswerAsync(const IncomingCall& call, const exchange::v1::Envelope& request,
                           AnswerDone done);
  virtual void DeliverAsync(const IncomingCall& call, const exchange::v1::Envelope& melding,
                            DeliverDone done);
};

// A reply envelope carrying `payload` (what Answer returns).
exchange::v1::Envelope ReplyWith(const google::protobuf::Message& payload);

struct EndpointServerOptions {
  std::string listen_address = "127.0.0.1:0";  // port 0: any free port (see port())
  std::string cert_file;    // this party's certificate (the gateway checks its OIN)
  std::string key_file;
  std::string ca_file;      // the CA the gateway's client certificate chains to
  std::string gateway_oin;  // the only caller accepted
  std::string crl_directory;  // optional: revoked certificates refused
  absl::Duration refresh_interval = absl::Seconds(60);  // certificate files re-read
};

class EndpointServer {
 public:
  // Serves `service` (not owned; must outlive the server) until the server is destroyed.
  static absl::StatusOr<std::unique_ptr<EndpointServer>> Start(
      const EndpointServerOptions& options, EndpointService* service);
  ~EndpointServer();  // Shutdown(absl::Seconds(5))
  EndpointServer(const EndpointServer&) = delete;
  EndpointServer& operator=(const EndpointServer&) = delete;

  int port() const { return port_; }
  // Stops accepting calls; calls in progress get up to `grace` to finish. Idempotent.
  void Shutdown(absl::Duration grace);

 private:
  class Service;
  EndpointServer() = default;

  int port_ = 0;
  std::unique_ptr<Service> grpc_service_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

}  // namespace knooppunt::client

#endif  // KNOOPPUNT_GATEWAY_CLIENT_ENDPOINT_SERVICE_H_
