// The Exchange service: where a message's path is put together, top-down —
//   accept → authenticate → decide → transform → audit (Admitter) → forward; for a
//   bevraging the reply passes the transform step too (the agreement's reply_fields).
// Each step lives in its own module; this file only sequences them and maps their results
// onto gRPC status codes.
//
// Guarantees: nothing is forwarded unless the Admitter admitted it (certificate OIN equals
// the envelope's sender, an agreement in force allows it, the decision is on record). Every
// forwarded call also gets an outcome record. What is forwarded is the payload as the
// agreement's field list left it; a reply carries only the agreement's reply fields, and the
// outcome record lists the removed paths ("reply:<path>"). Callback API: no thread blocks on a request;
// the caller's deadline (capped) and cancellation are carried over to the endpoint call.
#ifndef KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_
#define KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_

#include <atomic>

#include "gateway/exchange/admission.h"
#include "gateway/forward/endpoint_channels.h"
#include "gateway/store/message_store.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::delivery {
class DeliveryScheduler;
}  // namespace knooppunt::delivery

namespace knooppunt::exchange {

class ExchangeService final : public v1::Exchange::CallbackService {
 public:
  ExchangeService(ExchangeDependencies deps, forward::EndpointChannels* endpoints,
                  ExchangeOptions options)
      : deps_(deps), options_(std::move(options)), admitter_(deps_, options_),
        endpoints_(endpoints) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* context,
                                    const v1::Envelope* request, v1::Envelope* reply) override;

  // Drain (operator's Admin.Drain, shutdown): from now on Request and Send answer
  // UNAVAILABLE "draining" before anything else; calls already started finish. One-way.
  void SetDraining() { draining_.store(true, std::memory_order_release); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  // Meldingen (gateway/exchange/melding_calls.cc). Without AttachMeldingen() they answer
  // UNAVAILABLE. Call before the service is registered; both must outlive it.
  void AttachMeldingen(store::MessageStore* store, delivery::DeliveryScheduler* delivery) {
    store_ = store;
    delivery_ = delivery;
  }
  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* context,
                                 const v1::Envelope* request, v1::Receipt* receipt) override;
  grpc::ServerWriteReactor<v1::Envelope>* Receive(grpc::CallbackServerContext* context,
                                                  const v1::ReceiveRequest* request) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* context,
                                const v1::AckRequest* request, v1::AckResponse* reply) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::StatusRequest* request,
                                      v1::DeliveryStatus* reply) override;

 private:
  friend class BevragingCall;
  friend class MeldingCall;
  friend class InboxStream;
  store::MessageStore* store_ = nullptr;
  delivery::DeliveryScheduler* delivery_ = nullptr;
  const ExchangeDependencies deps_;
  const ExchangeOptions options_;
  const Admitter admitter_;
  forward::EndpointChannels* const endpoints_;
  std::atomic<bool> draining_{false};
};

}  // namespace knooppunt::exchange

#endif  // KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_
