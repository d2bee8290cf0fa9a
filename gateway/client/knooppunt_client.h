// KnooppuntClient: what a party's backoffice links to talk to the Knooppunt gateway.
//
// A synchronous API on purpose: each call blocks the calling thread until the gateway
// answers (or the call's timeout passes), which is what most backoffice code wants. A client
// is thread-safe; use one per process and call it from as many threads as you like (it
// multiplexes calls over one mTLS connection).
//
// Guarantees:
// - Connect() reads the certificate, key and CA files once (an unreadable file is an error
//   naming it), presents the certificate on every connection, re-reads the files for
//   rotation, and accepts the gateway only when its chain verifies against the CA and its
//   certificate carries options.gateway_oin. The party's own OIN is read from its
//   certificate and used as the envelope sender.
// - Send() gives a melding a fresh message id (unless the caller set one) and retries it
//   with the SAME envelope, so the same message id, on UNAVAILABLE, DEADLINE_EXCEEDED and
//   RESOURCE_EXHAUSTED, waiting at least the gateway's RetryInfo delay; the gateway stores a
//   message id once, so a retry after a lost Receipt returns the original (duplicate = true).
// - Request() (a bevraging) is tried once: whether a query may be repeated is the caller's call.
// - Every error is an absl::Status with the gRPC code; DescribeError() (errors.h) gives its
//   typed view: kind, whether the recipient's endpoint produced it, RetryInfo delay.
#ifndef KNOOPPUNT_GATEWAY_CLIENT_KNOOPPUNT_CLIENT_H_
#define KNOOPPUNT_GATEWAY_CLIENT_KNOOPPUNT_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gateway/client/envelope.h"
#include "gateway/client/errors.h"
#include "google/protobuf/message.h"
#include "grpcpp/channel.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::client {

// How Send() retries. Waits grow from initial_backoff by `multiplier` up to max_backoff, with
// up to 20% random jitter; a RetryInfo delay from the gateway is honoured when it is longer.
struct RetryPolicy {
  int max_attempts = 5;  // 1: no retries
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(10);
  double multiplier = 2.0;
};

struct ClientOptions {
  std::string gateway_address;  // "host:port"
  std::string cert_file;        // this party's certificate (PEM; OIN in subject serialNumber)
  std::string key_file;         // its private key (PEM)
  std::string ca_file;          // the CA the gateway's certificate chains to (PEM)
  std::string gateway_oin;      // the OIN the gateway's certificate must carry
  // Overrides the host name checked against the gateway certificate (SNI), e.g. when
  // connecting by IP address to a certificate that names only the host.
  std::string tls_server_name;
  // Connect() waits this long for the first connection and fails with UNAVAILABLE if none
  // comes up (wrong address, wrong CA, refused certificate). Zero: connect lazily.
  absl::Duration connect_timeout = absl::Seconds(10);
  // Per-call timeout when a call does not give its own.
  absl::Duration call_timeout = absl::Seconds(30);
  absl::Duration refresh_interval = absl::Seconds(60);  // re-read certificate files
  RetryPolicy retry;
};

// Per-call choices.
struct CallOptions {
  absl::Duration timeout = absl::ZeroDuration();  // zero: ClientOptions::call_timeout
  std::string correlation_id;                     // optional conversation id
  std::string message_id;                         // empty: a fresh UUID
};

class KnooppuntClient {
 public:
  static absl::StatusOr<std::unique_ptr<KnooppuntClient>> Connect(const ClientOptions& options);

  // This party's OIN (from its certificate): the sender of every envelope it builds.
  const std::string& oin() const { return oin_; }

  // An envelope from this party with a fresh message id, the current time, a new trace and
  // `payload` packed (NewEnvelope in envelope.h), plus call.correlation_id / message_id.
  exchange::v1::Envelope MakeEnvelope(const std::string& recipient, const std::string& purpose,
                                      const google::protobuf::Message& payload,
                                      const CallOptions& call = {}) const;

  // ---- bevraging ----

  // Sends `envelope` as a bevraging and returns the reply envelope.
  absl::StatusOr<exchange::v1::Envelope> RequestEnvelope(const exchange::v1::Envelope& envelope,
                                                         const CallOptions& call = {});

  // A bevraging with `question` to `recipient` for `purpose`; the reply payload unpacked as
  // Reply (INTERNAL when it is of another type).
  template <typename Reply>
  absl::StatusOr<Reply> Request(const std::string& recipient, const std::string& purpose,
                                const google::protobuf::Message& question,
                                const CallOptions& call = {}) {
    absl::StatusOr<exchange::v1::Envelope> reply =
        RequestEnvelope(MakeEnvelope(recipient, purpose, question, call), call);
    if (!reply.ok()) return reply.status();
    Reply typed;
    if (!reply->payload().UnpackTo(&typed)) {
      return absl::InternalError(absl::StrCat("the reply is a ", reply->payload().type_url(),
                                              ", not a ", Reply().GetTypeName()));
    }
    return typed;
  }

  // ---- melding ----

  // Sends `envelope` as a melding, retrying per the RetryPolicy with the same envelope.
  absl::StatusOr<exchange::v1::Receipt> SendEnvelope(const exchange::v1::Envelope& envelope,
                                                     const CallOptions& call = {});

  // A melding with `payload` to `recipient` for `purpose` (message id: call.message_id or a
  // fresh UUID; the Receipt names it).
  absl::StatusOr<exchange::v1::Receipt> Send(const std::string& recipient,
                                             const std::string& purpose,
                                             const google::protobuf::Message& payload,
                                             const CallOptions& call = {});

  // Delivery status of a melding (sender: empty for this party's own meldingen).
  absl::StatusOr<exchange::v1::DeliveryStatus> GetStatus(const std::string& message_id,
                                                         const std::string& sender = "");

  // ---- inbox (a recipient without an endpoint) ----

  // Waits at most `wait` for up to `max_messages` meldingen from this party's inbox and
  // returns those that arrived (possibly none), as soon as max_messages arrived. A melding
  // not acknowledged within the gateway's visibility timeout is handed out again — also
  // during a long `wait`, so a batch may hold one twice: ProcessInbox acknowledges each as it
  // arrives and is the better choice for a consumer.
  absl::StatusOr<std::vector<exchange::v1::Envelope>> Receive(int max_messages,
                                                              absl::Duration wait);

  // Acknowledges a received melding (its envelope's sender and message_id).
  absl::Status Ack(const std::string& sender, const std::string& message_id);

  // Receive + Ack: hands each melding to `handle` as it arrives (waiting at most `wait` for up
  // to `max_messages`) and acknowledges it at once when `handle` returns OK (an error leaves
  // it in the inbox for a later try). Returns how many were acknowledged; stops at the first
  // failed Ack.
  absl::StatusOr<int> ProcessInbox(
      const std::function<absl::Status(const exchange::v1::Envelope&)>& handle,
      int max_messages, absl::Duration wait);

  // The underlying stub, for calls this class does not wrap.
  exchange::v1::Exchange::Stub& stub() { return *stub_; }

 private:
  KnooppuntClient() = default;
  // One Receive stream: calls `each` for every melding as it arrives, at most max_messages,
  // for at most `wait`; an error from `each` ends the stream and is returned.
  absl::Status ReadInbox(int max_messages, absl::Duration wait,
                         const std::function<absl::Status(const exchange::v1::Envelope&)>& each);
  void PrepareContext(grpc::ClientContext* context, absl::Duration timeout) const;

  ClientOptions options_;
  std::string oin_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<exchange::v1::Exchange::Stub> stub_;
};

}  // namespace knooppunt::client

#endif  // KNOOPPUNT_GATEWAY_CLIENT_KNOOPPUNT_CLIENT_H_
