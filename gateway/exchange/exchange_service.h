// The Exchange service: where a message's path is put together, top-down —
//   accept → authenticate → decide → audit (Admitter) → (transform) → forward.
// Each step lives in its own module; this file only sequences them and maps their results
// onto gRPC status codes.
//
// Guarantees: nothing is forwarded unless the Admitter admitted it (certificate OIN equals
// the envelope's sender, an agreement in force allows it, the decision is on record). Every
// forwarded call also gets an outcome record. Callback API: no thread blocks on a request;
// the caller's deadline (capped) and cancellation are carried over to the endpoint call.
#ifndef KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_
#define KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_

#include "gateway/exchange/admission.h"
#include "gateway/forward/endpoint_channels.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::exchange {

class ExchangeService final : public v1::Exchange::CallbackService {
 public:
  ExchangeService(ExchangeDependencies deps, forward::EndpointChannels* endpoints,
                  ExchangeOptions options)
      : deps_(deps), options_(std::move(options)), admitter_(deps_, options_),
        endpoints_(endpoints) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* context,
                                    const v1::Envelope* request, v1::Envelope* reply) override;

 private:
  friend class BevragingCall;
  const ExchangeDependencies deps_;
  const ExchangeOptions options_;
  const Admitter admitter_;
  forward::EndpointChannels* const endpoints_;
};

}  // namespace knooppunt::exchange

#endif  // KNOOPPUNT_GATEWAY_EXCHANGE_EXCHANGE_SERVICE_H_
