#include "gateway/audit/audit_log.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gateway/common/log.h"
#include "gateway/common/sqlite_util.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::audit {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS records(
  seq INTEGER PRIMARY KEY,
  time_ns INTEGER NOT NULL,
  sender TEXT NOT NULL,
  recipient TEXT NOT NULL,
  authenticated_oin TEXT NOT NULL,
  message_type TEXT NOT NULL,
  agreement_id TEXT NOT NULL,
  decision INTEGER NOT NULL,
  trace_id TEXT NOT NULL,
  record BLOB NOT NULL,
  hash BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS records_time ON records(time_ns);
CREATE TABLE IF NOT EXISTS subjects(
  pkey INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(pkey, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints(
  seq INTEGER PRIMARY KEY,
  head BLOB NOT NULL,
  time_ns INTEGER NOT NULL,
  instance_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  signature BLOB NOT NULL);
)sql";

std::string SqliteError(sqlite3* db, absl::string_view what) {
  return absl::StrCat(what, ": ", db ? sqlite3_errmsg(db) : "no database");
}

using sqlite::Statement;

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite::BindText(s, i, v, SQLITE_STATIC);  // bound values outlive the statement's step
}
void BindBlob(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite::BindBlob(s, i, v, SQLITE_STATIC);
}

}  // namespace

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

absl::Status AuditLog::Exec(const char* sql) { return sqlite::Exec(db_, sql, "audit database"); }

absl::Status AuditLog::Init() {
  if (sqlite3_open_v2(options_.db_path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return absl::UnavailableError(SqliteError(db_, absl::StrCat("cannot open audit database ", options_.db_path)));
  }
  // Readable by the gateway's user only (SQLite gives the -wal and -shm files the same mode).
  ::chmod(options_.db_path.c_str(), 0600);
  sqlite3_busy_timeout(db_, 5000);
  // WAL with synchronous=FULL: a commit is on disk when it returns. The WAL is folded into
  // the database every ~40 MB rather than every 4 MB, so group commits stay cheap.
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                          "PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=10000"}) {
    absl::Status s = Exec(sql);
    if (!s.ok()) return s;
  }
  if (options_.max_db_bytes > 0) {
    Statement ps(db_, "PRAGMA page_size");
    int64_t page = 4096;
    if (ps.ok() && sqlite3_step(ps.get()) == SQLITE_ROW) page = sqlite3_column_int64(ps.get(), 0);
    const std::string pragma =
        absl::StrCat("PRAGMA max_page_count=", std::max<int64_t>(1, options_.max_db_bytes / page));
    absl::Status s = Exec(pragma.c_str());
    if (!s.ok()) return s;
  }
  absl::Status s = Exec(kSchema);
  if (!s.ok()) return s;
  // Resume the chain where it ended.
  Statement last(db_, "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1");
  Statement cp(db_, "SELECT seq, head FROM checkpoints ORDER BY seq DESC LIMIT 1");
  if (!last.ok() || !cp.ok()) return absl::UnavailableError(SqliteError(db_, "audit database"));
  if (sqlite3_step(cp.get()) == SQLITE_ROW) {
    checkpoint_seq_ = sqlite3_column_int64(cp.get(), 0);
    seq_ = checkpoint_seq_;
    head_.assign(static_cast<const char*>(sqlite3_column_blob(cp.get(), 1)),
                 static_cast<size_t>(sqlite3_column_bytes(cp.get(), 1)));
  }
  if (sqlite3_step(last.get()) == SQLITE_ROW && sqlite3_column_int64(last.get(), 0) >= seq_) {
    seq_ = sqlite3_column_int64(last.get(), 0);
    head_.assign(static_cast<const char*>(sqlite3_column_blob(last.get(), 1)),
                 static_cast<size_t>(sqlite3_column_bytes(last.get(), 1)));
  }
  if (head_.size() != kHashBytes) return absl::DataLossError("audit database: chain head damaged");
  if (seq_ > checkpoint_seq_) first_unsigned_ = absl::Now();
  committed_ = seq_;
  return absl::OkStatus();
}

AuditLog::~AuditLog() {
  Close();
  sqlite3_close(db_);
}

void AuditLog::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
  completions_.reset();  // runs the last completions, then joins
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
  {
    google::protobuf::io::StringOutputStream out(&p.bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    record.SerializeToCodedStream(&coded);
  }
  p.time_ns = google::protobuf::util::TimeUtil::TimestampToNanoseconds(record.time());
  p.sender = record.sender();
  p.recipient = record.recipient_oin().empty() ? record.recipient() : record.recipient_oin();
  p.authenticated_oin = record.authenticated_oin();
  p.message_type = record.message_type();
  p.agreement_id = record.agreement_id();
  p.trace_id = record.trace_id();
  p.decision = static_cast<int>(record.decision());
  p.subjects.assign(record.data_subjects().begin(), record.data_subjects().end());
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

absl::Status AuditLog::SignCheckpointLocked(int64_t seq, const std::string& head) {
  audit::Checkpoint c;
  c.seq = seq;
  c.head = head;
  c.time_ns = absl::ToUnixNanos(absl::Now());
  c.instance_id = options_.instance_id;
  c.key_id = signer_->key_id();
  absl::StatusOr<std::string> sig = signer_->Sign(CheckpointMessage(c));
  if (!sig.ok()) return sig.status();
  c.signature = *sig;
  static constexpr const char* kInsert =
      "INSERT INTO checkpoints(seq, head, time_ns, instance_id, key_id, signature) "
      "VALUES(?,?,?,?,?,?)";
  Statement st(db_, kInsert);
  if (!st.ok()) return absl::UnavailableError(SqliteError(db_, "audit checkpoint"));
  sqlite3_bind_int64(st.get(), 1, c.seq);
  BindBlob(st.get(), 2, c.head);
  sqlite3_bind_int64(st.get(), 3, c.time_ns);
  BindText(st.get(), 4, c.instance_id);
  BindText(st.get(), 5, c.key_id);
  BindBlob(st.get(), 6, c.signature);
  if (sqlite3_step(st.get()) != SQLITE_DONE) {
    return absl::UnavailableError(SqliteError(db_, "audit checkpoint"));
  }
  if (options_.log_checkpoints) {
    Log(LogLevel::kInfo, "audit_checkpoint",
        {{"seq", absl::StrCat(c.seq)}, {"head", ToHex(c.head)}, {"key_id", c.key_id}});
  }
  return absl::OkStatus();
}

absl::Status AuditLog::WriteBatch(std::vector<Pending>& batch) {
  absl::Status s = Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  const int64_t seq_before = seq_;
  const std::string head_before = head_;
  int64_t checkpoint_seq = checkpoint_seq_;
  auto fail = [&](absl::Status st) {
    Exec("ROLLBACK").IgnoreError();
    seq_ = seq_before;
    head_ = head_before;
    return st;
  };
  static constexpr const char* kInsert =
      "INSERT INTO records(seq, time_ns, sender, recipient, authenticated_oin, message_type, "
      "agreement_id, decision, trace_id, record, hash) VALUES(?,?,?,?,?,?,?,?,?,?,?)";
  Statement ins(db_, kInsert);
  Statement sub(db_, "INSERT OR IGNORE INTO subjects(pkey, seq) VALUES(?,?)");
  if (!ins.ok() || !sub.ok()) return fail(absl::UnavailableError(SqliteError(db_, "audit write")));
  for (Pending& p : batch) {
    const int64_t seq = seq_ + 1;
    std::string hash = ChainHash(head_, seq, p.bytes);
    sqlite3_stmt* st = ins.get();
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, p.time_ns);
    BindText(st, 3, p.sender);
    BindText(st, 4, p.recipient);
    BindText(st, 5, p.authenticated_oin);
    BindText(st, 6, p.message_type);
    BindText(st, 7, p.agreement_id);
    sqlite3_bind_int(st, 8, p.decision);
    BindText(st, 9, p.trace_id);
    BindBlob(st, 10, p.bytes);
    BindBlob(st, 11, hash);
    if (sqlite3_step(st) != SQLITE_DONE) {
      return fail(absl::UnavailableError(SqliteError(db_, "audit write")));
    }
    for (const std::string& subject : p.subjects) {
      sqlite3_stmt* ss = sub.get();
      sqlite3_reset(ss);
      sqlite3_bind_int64(ss, 1, PseudonymKey(subject));
      sqlite3_bind_int64(ss, 2, seq);
      if (sqlite3_step(ss) != SQLITE_DONE) {
        return fail(absl::UnavailableError(SqliteError(db_, "audit write")));
      }
    }
    seq_ = seq;
    head_ = std::move(hash);
    if (seq_ - checkpoint_seq >= options_.checkpoint_every_records) {
      s = SignCheckpointLocked(seq_, head_);
      if (!s.ok()) return fail(s);
      checkpoint_seq = seq_;
    }
  }
  s = Exec("COMMIT");
  if (!s.ok()) return fail(s);
  if (checkpoint_seq != checkpoint_seq_) {
    checkpoint_seq_ = checkpoint_seq;
    first_unsigned_ = absl::InfiniteFuture();
  }
  if (seq_ > checkpoint_seq_ && first_unsigned_ == absl::InfiniteFuture()) first_unsigned_ = absl::Now();
  return absl::OkStatus();
}

absl::Status AuditLog::WriteCheckpointTxn() {
  if (seq_ == checkpoint_seq_) return absl::OkStatus();
  absl::Status s = Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  s = SignCheckpointLocked(seq_, head_);
  if (s.ok()) s = Exec("COMMIT");
  if (!s.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return s;
  }
  checkpoint_seq_ = seq_;
  first_unsigned_ = absl::InfiniteFuture();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> AuditLog::RetentionTxn(absl::Time now) {
  if (options_.retention <= absl::ZeroDuration()) return 0;
  const int64_t cutoff = absl::ToUnixNanos(now - options_.retention);
  // The newest checkpoint whose record is older than the cutoff: everything up to it goes.
  Statement find(db_,
            "SELECT c.seq FROM checkpoints c JOIN records r ON r.seq = c.seq "
            "WHERE r.time_ns < ? ORDER BY c.seq DESC LIMIT 1");
  if (!find.ok()) return absl::UnavailableError(SqliteError(db_, "audit retention"));
  sqlite3_bind_int64(find.get(), 1, cutoff);
  if (sqlite3_step(find.get()) != SQLITE_ROW) return 0;
  const int64_t upto = sqlite3_column_int64(find.get(), 0);
  sqlite3_reset(find.get());
  absl::Status s = Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  Statement del(db_, "DELETE FROM records WHERE seq <= ?");
  Statement dels(db_, "DELETE FROM subjects WHERE seq <= ?");
  int64_t deleted = 0;
  bool ok = del.ok() && dels.ok();
  if (ok) {
    sqlite3_bind_int64(del.get(), 1, upto);
    sqlite3_bind_int64(dels.get(), 1, upto);
    ok = sqlite3_step(del.get()) == SQLITE_DONE;
    deleted = sqlite3_changes(db_);
    ok = ok && sqlite3_step(dels.get()) == SQLITE_DONE;
  }
  if (ok) ok = Exec("COMMIT").ok();
  if (!ok) {
    std::string msg = SqliteError(db_, "audit retention");
    Exec("ROLLBACK").IgnoreError();
    return absl::UnavailableError(msg);
  }
  if (deleted > 0) {
    Log(LogLevel::kInfo, "audit_retention",
        {{"deleted_through_seq", absl::StrCat(upto)}, {"records", absl::StrCat(deleted)}});
  }
  return deleted;
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
        Exec(read_only_request_ ? "PRAGMA query_only=1" : "PRAGMA query_only=0").IgnoreError();
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
