#include "gateway/audit/audit_log.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gateway/common/log.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::audit {

AuditLog::AuditLog(const AuditLogOptions& options)
    : options_(options), subjects_(options.hmac_key), head_(GenesisHash()) {}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const AuditLogOptions& options) {
  if (options.hmac_key.size() < kMinHmacKeyBytes) {
    return absl::InvalidArgumentError("audit HMAC key missing or too short");
  }
  std::unique_ptr<AuditLog> log(new AuditLog(options));
  absl::StatusOr<std::unique_ptr<Signer>> signer = Signer::FromPemFile(options.signing_key_file);
  if (!signer.ok()) return signer.status();
  log->signer_ = *std::move(signer);
  absl::Status s = log->Init();
  if (!s.ok()) return s;
  log->completions_ = std::make_unique<SerialExecutor>();
  log->writer_ = std::thread([l = log.get()] { l->WriterLoop(); });
  return log;
}

absl::Status AuditLog::Init() {
  absl::StatusOr<std::unique_ptr<AuditStorage>> storage;
  if (options_.postgres.has_value()) {
    PostgresAuditOptions pg_options;
    pg_options.connect = *options_.postgres;
    pg_options.chain = options_.instance_id;
    pg_options.max_db_bytes = options_.max_db_bytes;
    storage = OpenPostgresAuditStorage(pg_options);
  } else {
    storage = OpenSqliteAuditStorage(options_.db_path, options_.max_db_bytes);
  }
  if (!storage.ok()) return storage.status();
  storage_ = *std::move(storage);
  // Resume the chain where it ended.
  reload_ = true;
  absl::Status s = ReloadIfNeeded();
  if (!s.ok()) return s;
  committed_ = seq_;
  return absl::OkStatus();
}

absl::Status AuditLog::ReloadIfNeeded() {
  if (!reload_) return absl::OkStatus();
  absl::StatusOr<ChainState> state = storage_->Load();
  if (!state.ok()) return state.status();
  if (state->head.size() != kHashBytes) {
    return absl::DataLossError("audit database: chain head damaged");
  }
  seq_ = state->seq;
  head_ = state->head;
  checkpoint_seq_ = state->checkpoint_seq;
  first_unsigned_ = seq_ > checkpoint_seq_ ? absl::Now() : absl::InfiniteFuture();
  reload_ = false;
  return absl::OkStatus();
}

AuditLog::~AuditLog() { Close(); }

void AuditLog::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
  completions_.reset();  // runs the last completions, then joins
  storage_.reset();      // PostgreSQL: the chain's lock goes with the connection
}

int64_t AuditLog::committed() const {
  absl::MutexLock lock(&mu_);
  return committed_;
}

void AuditLog::SetReadOnlyForTest(bool read_only) {
  absl::MutexLock lock(&mu_);
  read_only_request_ = read_only ? 1 : 0;
}

void AuditLog::AddDataSubjects(const google::protobuf::Descriptor* type, absl::string_view payload,
                               v1::DecisionRecord* record) const {
  for (std::string& p : subjects_.Of(type, payload)) record->add_data_subjects(std::move(p));
}

void AuditLog::Append(const v1::DecisionRecord& record, std::function<void(absl::Status)> done,
                      bool waited) {
  Pending p;
  StoredRecord& row = p.row;
  {
    google::protobuf::io::StringOutputStream out(&row.bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    record.SerializeToCodedStream(&coded);
  }
  row.time_ns = google::protobuf::util::TimeUtil::TimestampToNanoseconds(record.time());
  row.sender = record.sender();
  row.recipient = record.recipient_oin().empty() ? record.recipient() : record.recipient_oin();
  row.authenticated_oin = record.authenticated_oin();
  row.message_type = record.message_type();
  row.agreement_id = record.agreement_id();
  row.trace_id = record.trace_id();
  row.decision = static_cast<int>(record.decision());
  row.subjects.assign(record.data_subjects().begin(), record.data_subjects().end());
  p.done = std::move(done);
  p.waited = waited;
  if (options_.metrics != nullptr) p.queued = absl::Now();
  absl::MutexLock lock(&mu_);
  if (stop_) {
    mu_.Unlock();
    p.done(absl::UnavailableError("audit log closed"));
    mu_.Lock();
    return;
  }
  if (waited) {
    ++waited_queued_;
  } else if (oldest_lazy_ == absl::InfiniteFuture()) {
    oldest_lazy_ = absl::Now();
  }
  queue_.push_back(std::move(p));
}

absl::Status AuditLog::Record(const v1::DecisionRecord& record) {
  absl::Notification done;
  absl::Status result;
  Append(record, [&](absl::Status s) {
    result = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

absl::Status AuditLog::Checkpoint() {
  absl::Notification done;
  absl::Status result;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::UnavailableError("audit log closed");
    control_.push_back({Control::kCheckpoint, absl::Now(), [&](absl::StatusOr<int64_t> s) {
                          result = s.status();
                          done.Notify();
                        }});
  }
  done.WaitForNotification();
  return result;
}

absl::StatusOr<int64_t> AuditLog::ApplyRetention(absl::Time now) {
  absl::Notification done;
  absl::StatusOr<int64_t> result;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::UnavailableError("audit log closed");
    control_.push_back({Control::kRetention, now, [&](absl::StatusOr<int64_t> s) {
                          result = std::move(s);
                          done.Notify();
                        }});
  }
  done.WaitForNotification();
  return result;
}

absl::StatusOr<Checkpoint> AuditLog::SignCheckpoint(int64_t seq, const std::string& head) {
  audit::Checkpoint c;
  c.seq = seq;
  c.head = head;
  c.time_ns = absl::ToUnixNanos(absl::Now());
  c.instance_id = options_.instance_id;
  c.key_id = signer_->key_id();
  absl::StatusOr<std::string> sig = signer_->Sign(CheckpointMessage(c));
  if (!sig.ok()) return sig.status();
  c.signature = *sig;
  return c;
}

void AuditLog::LogCheckpoint(const audit::Checkpoint& c) const {
  if (!options_.log_checkpoints) return;
  Log(LogLevel::kInfo, "audit_checkpoint",
      {{"seq", absl::StrCat(c.seq)}, {"head", ToHex(c.head)}, {"key_id", c.key_id}});
}

absl::Status AuditLog::WriteBatch(std::vector<Pending>& batch) {
  const int64_t seq_before = seq_;
  absl::Status s = WriteBatchOnce(batch);
  // PostgreSQL: a connection that broke while idle is only noticed by the next statement.
  // Once more on a new connection — only when the database shows that nothing of the batch
  // was committed (else its records are in the log and the batch is reported failed: the
  // log over-reports, never under-reports).
  if (!s.ok() && options_.postgres.has_value() && absl::IsUnavailable(s) &&
      ReloadIfNeeded().ok() && seq_ == seq_before) {
    s = WriteBatchOnce(batch);
  }
  if (!s.ok() && !absl::IsUnavailable(s)) s = absl::UnavailableError(s.message());
  return s;
}

absl::Status AuditLog::WriteBatchOnce(std::vector<Pending>& batch) {
  absl::Status s = ReloadIfNeeded();
  if (!s.ok()) return s;
  const int64_t seq_before = seq_;
  const std::string head_before = head_;
  int64_t checkpoint_seq = checkpoint_seq_;
  auto fail = [&](absl::Status st) {
    seq_ = seq_before;
    head_ = head_before;
    reload_ = true;  // the database says where the chain ends before the next write
    return st;
  };
  std::vector<const StoredRecord*> rows;
  rows.reserve(batch.size());
  std::vector<audit::Checkpoint> checkpoints;
  for (Pending& p : batch) {
    p.row.seq = seq_ + 1;
    p.row.hash = ChainHash(head_, p.row.seq, p.row.bytes);
    seq_ = p.row.seq;
    head_ = p.row.hash;
    rows.push_back(&p.row);
    if (seq_ - checkpoint_seq >= options_.checkpoint_every_records) {
      absl::StatusOr<audit::Checkpoint> c = SignCheckpoint(seq_, head_);
      if (!c.ok()) return fail(c.status());
      checkpoints.push_back(*std::move(c));
      checkpoint_seq = seq_;
    }
  }
  s = storage_->Write(rows, checkpoints);
  if (!s.ok()) return fail(s);
  for (const audit::Checkpoint& c : checkpoints) LogCheckpoint(c);
  if (checkpoint_seq != checkpoint_seq_) {
    checkpoint_seq_ = checkpoint_seq;
    first_unsigned_ = absl::InfiniteFuture();
  }
  if (seq_ > checkpoint_seq_ && first_unsigned_ == absl::InfiniteFuture()) first_unsigned_ = absl::Now();
  return absl::OkStatus();
}

absl::Status AuditLog::WriteCheckpointTxn() {
  absl::Status s = ReloadIfNeeded();
  if (!s.ok()) return s;
  if (seq_ == checkpoint_seq_) return absl::OkStatus();
  absl::StatusOr<audit::Checkpoint> c = SignCheckpoint(seq_, head_);
  if (!c.ok()) return c.status();
  s = storage_->Write({}, {*c});
  if (!s.ok()) {
    reload_ = true;
    return s;
  }
  LogCheckpoint(*c);
  checkpoint_seq_ = seq_;
  first_unsigned_ = absl::InfiniteFuture();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> AuditLog::RetentionTxn(absl::Time now) {
  if (options_.retention <= absl::ZeroDuration()) return 0;
  absl::Status s = ReloadIfNeeded();
  if (!s.ok()) return s;
  absl::StatusOr<RetentionResult> r =
      storage_->DeleteThrough(absl::ToUnixNanos(now - options_.retention));
  if (!r.ok()) {
    reload_ = true;
    return r.status();
  }
  if (r->deleted > 0) {
    Log(LogLevel::kInfo, "audit_retention",
        {{"deleted_through_seq", absl::StrCat(r->through_seq)},
         {"records", absl::StrCat(r->deleted)}});
  }
  return r->deleted;
}

void AuditLog::WriterLoop() {
  std::vector<Pending> batch;
  std::vector<Control> control;
  for (;;) {
    bool stopping = false;
    {
      absl::MutexLock lock(&mu_);
      // Woken by a record somebody waits for, a control request, stop, a full batch — not by
      // lazy records alone: those wait for company until oldest_lazy_ + lazy_commit_delay.
      const absl::Time deadline = std::min(
          first_unsigned_ == absl::InfiniteFuture() ? absl::Now() + absl::Seconds(1)
                                                    : first_unsigned_ + options_.checkpoint_every,
          oldest_lazy_ == absl::InfiniteFuture() ? absl::InfiniteFuture()
                                                 : oldest_lazy_ + options_.lazy_commit_delay);
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](AuditLog* l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(l->mu_) {
                                  return l->waited_queued_ > 0 || !l->control_.empty() ||
                                         l->stop_ || l->queue_.size() >= l->options_.max_batch;
                                },
                                this),
                            deadline);
      const size_t n = std::min(queue_.size(), options_.max_batch);
      for (size_t i = 0; i < n; ++i) {
        if (queue_.front().waited) --waited_queued_;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      oldest_lazy_ = absl::InfiniteFuture();
      for (const Pending& left : queue_) {
        if (!left.waited) {
          oldest_lazy_ = absl::Now();  // queued after this batch was taken: about now
          break;
        }
      }
      for (Control& c : control_) control.push_back(std::move(c));
      control_.clear();
      stopping = stop_ && queue_.empty();
      if (read_only_request_ >= 0) {
        storage_->SetReadOnlyForTest(read_only_request_ == 1);
        read_only_request_ = -1;
      }
    }
    if (!batch.empty()) {
      absl::Status s = WriteBatch(batch);
      {
        absl::MutexLock lock(&mu_);
        committed_ = seq_;
      }
      if (!s.ok()) {
        Log(LogLevel::kError, "audit_write_failed",
            {{"error", std::string(s.message())}, {"records", absl::StrCat(batch.size())}});
      }
      if (options_.metrics != nullptr) {
        const absl::Time now = absl::Now();
        for (const Pending& p : batch) options_.metrics->OnAuditWrite(now - p.queued, s.ok());
      }
      completions_->Run([done = std::move(batch), s]() mutable {
        for (Pending& p : done) p.done(s);
      });
      batch.clear();  // valid again after the move
    }
    for (Control& c : control) {
      if (c.kind == Control::kCheckpoint) {
        absl::Status s = WriteCheckpointTxn();
        c.done(s.ok() ? absl::StatusOr<int64_t>(checkpoint_seq_) : absl::StatusOr<int64_t>(s));
      } else {
        c.done(RetentionTxn(c.now));
      }
    }
    control.clear();
    const absl::Time now = absl::Now();
    if (first_unsigned_ != absl::InfiniteFuture() && now >= first_unsigned_ + options_.checkpoint_every) {
      absl::Status s = WriteCheckpointTxn();
      if (!s.ok()) {
        Log(LogLevel::kError, "audit_checkpoint_failed", {{"error", std::string(s.message())}});
        first_unsigned_ = now;  // retry after another interval
      }
    }
    if (options_.retention > absl::ZeroDuration() && now >= next_retention_) {
      next_retention_ = now + absl::Minutes(1);
      absl::StatusOr<int64_t> r = RetentionTxn(now);
      if (!r.ok()) Log(LogLevel::kError, "audit_retention_failed", {{"error", std::string(r.status().message())}});
    }
    if (stopping) break;
  }
  WriteCheckpointTxn().IgnoreError();
  // Anything queued after stop was seen is refused.
  absl::MutexLock lock(&mu_);
  while (!queue_.empty()) {
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    mu_.Unlock();
    p.done(absl::UnavailableError("audit log closed"));
    mu_.Lock();
  }
  for (Control& c : control_) {
    mu_.Unlock();
    c.done(absl::UnavailableError("audit log closed"));
    mu_.Lock();
  }
  control_.clear();
}

}  // namespace knooppunt::audit
