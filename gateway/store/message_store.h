// Durable storage of meldingen: the interface the delivery logic is written against, so
// that the embedded SQLite store (sqlite_message_store.h) can be joined by e.g. a PostgreSQL
// store shared by several gateway replicas without touching gateway/delivery/.
//
// Guarantees every implementation must give:
//  - Append() calls `done` with OK only after the message is durable (survives kill -9 and
//    power loss); a message whose Append succeeded is never dropped by the store — it stays
//    until MarkDelivered() or MarkExpired().
//  - Idempotency: (sender, message_id) is unique. Appending it again with the same
//    content_hash succeeds with the stored record and duplicate = true (nothing is stored);
//    with a different content_hash it fails with ALREADY_EXISTS.
//  - Back-pressure: Append fails with RESOURCE_EXHAUSTED (before storing anything) while the
//    store holds its limit of undelivered messages or bytes. A duplicate still succeeds.
//  - Operations complete asynchronously on a store thread, in submission order; `done` is
//    never called on the caller's thread from within the call itself (except after Close():
//    see there), and must not block.
//  - seq increases with acceptance order: it IS the order in which messages were accepted.
#ifndef KNOOPPUNT_GATEWAY_STORE_MESSAGE_STORE_H_
#define KNOOPPUNT_GATEWAY_STORE_MESSAGE_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace knooppunt::store {

enum class MessageState : int { kAccepted = 1, kDelivered = 2, kExpired = 3 };

struct MessageRecord {
  int64_t seq = 0;                  // assigned by the store
  std::string sender;               // OIN
  std::string message_id;           // as the sender sent it (lower-cased for the key)
  std::string recipient;            // resolved OIN
  std::string correlation_id;
  std::string agreement_id;
  std::string content_hash;         // identifies "the same content" for idempotency
  std::string envelope;             // serialized exchange.v1.Envelope; cleared once final
  MessageState state = MessageState::kAccepted;
  absl::Time accepted_at = absl::UnixEpoch();
  absl::Time expires_at = absl::InfiniteFuture();
  absl::Time delivered_at = absl::InfinitePast();  // InfinitePast: not delivered
  int attempts = 0;
  std::string last_error;
};

struct AppendResult {
  MessageRecord record;  // the stored record (envelope left empty on a duplicate)
  bool duplicate = false;
  // Whether the caller hands the new message to its delivery now. False only in a store
  // shared by replicas (PostgreSQL), when a pending message of the same order key (sender,
  // recipient, correlation_id) is owned by another replica — that replica then owns this one
  // too — or is still to be handed to this one by its next ClaimWork(): either way the owner
  // learns of it at its next ClaimWork(), after the older ones, and the caller must not hand
  // it to its own delivery.
  bool owned = true;
};

struct StoreStats {
  uint64_t pending_messages = 0;  // accepted, neither delivered nor expired
  uint64_t pending_bytes = 0;     // their envelopes' bytes
  // When the oldest of them was accepted; InfiniteFuture when none is pending.
  absl::Time oldest_pending_accepted_at = absl::InfiniteFuture();
};

class MessageStore {
 public:
  using AppendDone = absl::AnyInvocable<void(absl::StatusOr<AppendResult>) &&>;
  using Done = absl::AnyInvocable<void(absl::Status) &&>;
  using FindDone = absl::AnyInvocable<void(absl::StatusOr<MessageRecord>) &&>;

  virtual ~MessageStore() = default;

  // Stores a newly accepted message (seq, state and attempts are set by the store).
  virtual void Append(MessageRecord record, AppendDone done) = 0;

  // A delivery attempt failed; remembers the attempt count and the error (for status).
  virtual void RecordAttempt(int64_t seq, int attempts, std::string error, Done done) = 0;

  // Final states. Both drop the stored envelope (data minimisation) and keep the header for
  // status and idempotency. No effect (still OK) when the message is already final.
  virtual void MarkDelivered(int64_t seq, absl::Time at, int attempts, Done done) = 0;
  virtual void MarkExpired(int64_t seq, int attempts, std::string last_error, Done done) = 0;

  // Takes back an Append whose acceptance failed afterwards (its decision record could not be
  // written): the message is removed as if never stored, so it is neither delivered nor
  // answered as a duplicate. Only for a message not yet acknowledged to its sender nor given
  // to delivery. No effect (still OK) when it is not pending.
  virtual void Discard(int64_t seq, Done done) = 0;

  // The record of (sender, message_id) without its envelope; NOT_FOUND when there is none.
  virtual void Find(std::string sender, std::string message_id, FindDone done) = 0;

  // How delivery learns of the messages it must deliver besides those its own Sends append
  // (which it is handed directly). Several gateway replicas may share one store (e.g.
  // PostgreSQL): then each pending message has one owner at a time, the gateway delivering
  // it; Append makes the appending gateway its owner, and a gateway that stops (crashes)
  // loses its messages to the others once its lease lapses. ClaimWork() renews this
  // gateway's lease and returns the messages it has newly become the owner of, with their
  // envelopes, in seq order: at the first call (at start) every pending message it owns,
  // later those taken over from a stopped gateway and those another replica's Append gave it
  // (AppendResult::owned false there). Messages with the same order key (sender,
  // recipient, correlation_id) must have the same owner, so their order holds across
  // replicas. Called from the delivery scheduler's thread, at start and then periodically.
  // A store used by one gateway only returns every pending message at the first call and
  // nothing after.
  virtual absl::StatusOr<std::vector<MessageRecord>> ClaimWork() = 0;

  virtual StoreStats Stats() const = 0;

  // Completes every queued operation, then stops; later calls fail with UNAVAILABLE (their
  // `done` is then called at once, from within the call).
  virtual void Close() = 0;
};

// The key a message_id is stored under: lower-cased (UUIDs are case-insensitive).
std::string NormalizeMessageId(std::string message_id);

}  // namespace knooppunt::store

#endif  // KNOOPPUNT_GATEWAY_STORE_MESSAGE_STORE_H_
