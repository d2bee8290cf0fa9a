// knooppunt-audit: the auditor's tool for the gateway's tamper-evident audit log.
//
//   knooppunt-audit init-keys --dir=DIR
//       new audit keys: DIR/audit-hmac.key (pseudonym key), DIR/audit-signing.key (Ed25519,
//       the gateway signs checkpoints with it), DIR/audit-signing.pub (what verifiers need)
//   knooppunt-audit verify --db=FILE --public_key=PUB      (or --export_dir=DIR)
//       exit 0 when the log is intact, 1 when not (the first bad record is named), 2 on error
//   knooppunt-audit query (--db=FILE | --gateway=HOST:PORT --cert --key --ca) [filters]
//       [--format=table|json|csv]; filters: --from --until (RFC 3339) --sender --recipient
//       --message_type --agreement --decision=allowed|denied --trace_id --bsn (pseudonymised
//       here with --hmac_key; the BSN never leaves this tool) --limit
//   knooppunt-audit export --db=FILE --out=DIR
//       appends the records not yet exported to a new file in DIR (one chain across files)
//   PostgreSQL (an audit log shared by several gateway replicas, one chain per replica):
//   instead of --db give --postgres="host=... dbname=knooppunt user=knooppunt_auditor"
//   [--password_file=FILE]; verify checks every chain (the first problem names its chain),
//   query lists all chains in time order, export writes each chain to OUT/<chain>/ (or only
//   --chain=ID, to OUT itself); verify --export_dir=OUT accepts such a directory of chains.
//   knooppunt-audit pseudonym --hmac_key=FILE --bsn=BSN
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/common/log.h"
#include "gateway/common/pg_util.h"
#include "gateway/tls/credentials.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/create_channel.h"
#include "knooppunt/audit/v1/auditor.grpc.pb.h"

ABSL_FLAG(std::string, dir, "", "init-keys: directory for the new keys");
ABSL_FLAG(std::string, db, "", "the audit database (SQLite)");
ABSL_FLAG(std::string, public_key, "",
          "PEM public key(s) of the gateway's audit signing key, comma-separated after a key "
          "rotation");
ABSL_FLAG(std::string, export_dir, "", "verify: a directory of exported files instead of --db");
ABSL_FLAG(std::string, out, "", "export: directory to write to");
ABSL_FLAG(std::string, hmac_key, "", "the audit HMAC key file (for --bsn)");
ABSL_FLAG(std::string, gateway, "", "query via the gateway's Auditor service at HOST:PORT");
ABSL_FLAG(std::string, gateway_oin, "", "OIN the gateway's certificate must carry");
ABSL_FLAG(std::string, cert, "", "client certificate (PEM) for --gateway");
ABSL_FLAG(std::string, key, "", "client key (PEM) for --gateway");
ABSL_FLAG(std::string, ca, "", "CA bundle (PEM) for --gateway");
ABSL_FLAG(std::string, from, "", "records at or after this time (RFC 3339)");
ABSL_FLAG(std::string, until, "", "records before this time (RFC 3339)");
ABSL_FLAG(std::string, sender, "", "sender OIN");
ABSL_FLAG(std::string, recipient, "", "recipient OIN");
ABSL_FLAG(std::string, message_type, "", "message type");
ABSL_FLAG(std::string, agreement, "", "agreement id");
ABSL_FLAG(std::string, decision, "", "allowed or denied");
ABSL_FLAG(std::string, trace_id, "", "W3C trace id");
ABSL_FLAG(std::string, bsn, "", "a citizen's BSN; pseudonymised with --hmac_key before use");
ABSL_FLAG(int64_t, limit, 0, "at most this many records (0: all)");
ABSL_FLAG(std::string, format, "table", "table, json or csv");
ABSL_FLAG(std::string, postgres, "",
          "the audit log in PostgreSQL instead of --db: a libpq connection string, e.g. "
          "\"host=db dbname=knooppunt user=knooppunt_auditor\" (a read-only role suffices)");
ABSL_FLAG(std::string, password_file, "", "--postgres: file whose first line is the password");
ABSL_FLAG(std::string, chain, "",
          "export with --postgres: only this chain (a replica's instance_id), into --out");

namespace {

using knooppunt::audit::AuditEntry;
using knooppunt::audit::QueryFilter;
namespace v1 = knooppunt::audit::v1;

int Fail(const std::string& message) {
  std::fprintf(stderr, "knooppunt-audit: %s\n", message.c_str());
  return 2;
}

std::string TimeText(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ",
                          absl::FromUnixNanos(google::protobuf::util::TimeUtil::TimestampToNanoseconds(t)),
                          absl::UTCTimeZone());
}

std::string DecisionText(v1::Decision d) {
  return d == v1::DECISION_ALLOWED ? "allowed" : d == v1::DECISION_DENIED ? "denied" : "-";
}

std::string Csv(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

class Printer {
 public:
  explicit Printer(std::string format) : format_(std::move(format)) {}
  // `seq`: the record's seq, "chain/seq" for a log of several chains.
  void Row(const std::string& seq, const std::string& hash_hex, const v1::DecisionRecord& r) {
    const std::vector<std::string> cols = {
        seq, TimeText(r.time()), r.event(), r.operation(), r.sender(),
        r.recipient_oin().empty() ? r.recipient() : r.recipient_oin(), r.message_type(),
        r.purpose(), r.agreement_id(), DecisionText(r.decision()), r.reason(),
        absl::StrCat(r.grpc_status()), r.trace_id(), r.message_id(),
        absl::StrJoin(r.data_subjects(), ";"), absl::StrJoin(r.removed_paths(), ";"),
        absl::StrCat(r.latency_us()), r.instance_id()};
    if (format_ == "json") {
      std::string line = "{";
      for (size_t i = 0; i < cols.size(); ++i) {
        absl::StrAppend(&line, i ? "," : "", knooppunt::JsonQuote(kNames[i]), ":",
                        knooppunt::JsonQuote(cols[i]));
      }
      absl::StrAppend(&line, ",\"hash\":", knooppunt::JsonQuote(hash_hex), "}");
      std::printf("%s\n", line.c_str());
    } else if (format_ == "csv") {
      if (n_ == 0) std::printf("%s\n", absl::StrJoin(kNames, ",").c_str());
      std::vector<std::string> q;
      for (const std::string& c : cols) q.push_back(Csv(c));
      std::printf("%s\n", absl::StrJoin(q, ",").c_str());
    } else {
      if (n_ == 0) {
        std::printf("%-5s %-24s %-8s %-20s %-20s %-30s %-24s %-8s %s\n", "seq", "time", "event",
                    "sender", "recipient", "message_type", "agreement", "decision", "reason");
      }
      std::printf("%-5s %-24s %-8s %-20s %-20s %-30s %-24s %-8s %s\n", cols[0].c_str(),
                  cols[1].c_str(), cols[2].c_str(), cols[4].c_str(), cols[5].c_str(),
                  cols[6].c_str(), cols[8].empty() ? "-" : cols[8].c_str(), cols[9].c_str(),
                  cols[10].c_str());
    }
    ++n_;
  }
  int64_t rows() const { return n_; }

 private:
  static constexpr const char* kNames[] = {
      "seq", "time", "event", "operation", "sender", "recipient", "message_type", "purpose",
      "agreement_id", "decision", "reason", "grpc_status", "trace_id", "message_id",
      "data_subjects", "removed_paths", "latency_us", "instance_id"};
  const std::string format_;
  int64_t n_ = 0;
};

bool ParseTime(const std::string& text, absl::Time* t) {
  std::string err;
  return absl::ParseTime(absl::RFC3339_full, text, t, &err);
}

// The local audit log: --db (SQLite) or --postgres.
absl::StatusOr<std::unique_ptr<knooppunt::audit::AuditReader>> OpenLocal() {
  if (!absl::GetFlag(FLAGS_postgres).empty()) {
    knooppunt::pg::ConnectOptions o;
    o.conninfo = absl::GetFlag(FLAGS_postgres);
    o.application_name = "knooppunt-audit";
    if (!absl::GetFlag(FLAGS_password_file).empty()) {
      absl::StatusOr<std::string> pw =
          knooppunt::pg::ReadPasswordFile(absl::GetFlag(FLAGS_password_file));
      if (!pw.ok()) return pw.status();
      o.password = *pw;
    }
    return knooppunt::audit::AuditReader::OpenPostgres(o);
  }
  return knooppunt::audit::AuditReader::Open(absl::GetFlag(FLAGS_db));
}
bool HaveLocal() { return !absl::GetFlag(FLAGS_db).empty() || !absl::GetFlag(FLAGS_postgres).empty(); }

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int Query() {
  const std::string format = absl::GetFlag(FLAGS_format);
  if (format != "table" && format != "json" && format != "csv") return Fail("--format: table, json or csv");
  QueryFilter f;
  if (!absl::GetFlag(FLAGS_from).empty() && !ParseTime(absl::GetFlag(FLAGS_from), &f.from)) {
    return Fail("--from: not an RFC 3339 time");
  }
  if (!absl::GetFlag(FLAGS_until).empty() && !ParseTime(absl::GetFlag(FLAGS_until), &f.until)) {
    return Fail("--until: not an RFC 3339 time");
  }
  f.sender = absl::GetFlag(FLAGS_sender);
  f.recipient = absl::GetFlag(FLAGS_recipient);
  f.message_type = absl::GetFlag(FLAGS_message_type);
  f.agreement_id = absl::GetFlag(FLAGS_agreement);
  f.trace_id = absl::GetFlag(FLAGS_trace_id);
  f.limit = absl::GetFlag(FLAGS_limit);
  const std::string decision = absl::AsciiStrToLower(absl::GetFlag(FLAGS_decision));
  if (decision == "allowed") {
    f.decision = v1::DECISION_ALLOWED;
  } else if (decision == "denied") {
    f.decision = v1::DECISION_DENIED;
  } else if (!decision.empty()) {
    return Fail("--decision: allowed or denied");
  }
  if (!absl::GetFlag(FLAGS_bsn).empty()) {
    if (absl::GetFlag(FLAGS_hmac_key).empty()) return Fail("--bsn needs --hmac_key");
    absl::StatusOr<std::string> key = knooppunt::audit::ReadHmacKeyFile(absl::GetFlag(FLAGS_hmac_key));
    if (!key.ok()) return Fail(std::string(key.status().message()));
    f.data_subject = knooppunt::audit::Pseudonym(*key, absl::GetFlag(FLAGS_bsn));
  }
  Printer printer(format);

  if (!absl::GetFlag(FLAGS_gateway).empty()) {  // remote, via the Auditor service
    auto creds = knooppunt::tls::MutualTlsChannelCredentials(
        ReadFileOrDie(absl::GetFlag(FLAGS_ca)), ReadFileOrDie(absl::GetFlag(FLAGS_cert)),
        ReadFileOrDie(absl::GetFlag(FLAGS_key)), absl::GetFlag(FLAGS_gateway_oin));
    auto stub = v1::Auditor::NewStub(grpc::CreateChannel(absl::GetFlag(FLAGS_gateway), creds));
    v1::QueryRequest req;
    auto ts = [](absl::Time t) {
      return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
    };
    if (f.from != absl::InfinitePast()) *req.mutable_from() = ts(f.from);
    if (f.until != absl::InfiniteFuture()) *req.mutable_until() = ts(f.until);
    req.set_sender(f.sender);
    req.set_recipient(f.recipient);
    req.set_message_type(f.message_type);
    req.set_agreement_id(f.agreement_id);
    req.set_decision(f.decision);
    req.set_trace_id(f.trace_id);
    req.set_data_subject(f.data_subject);
    req.set_limit(static_cast<uint32_t>(f.limit));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto reader = stub->Query(&ctx, req);
    v1::AuditEntry e;
    while (reader->Read(&e)) printer.Row(absl::StrCat(e.seq()), e.hash(), e.record());
    grpc::Status s = reader->Finish();
    if (!s.ok()) return Fail(absl::StrCat("query refused: ", s.error_message()));
  } else {
    if (!HaveLocal()) return Fail("query needs --db, --postgres or --gateway");
    auto reader = OpenLocal();
    if (!reader.ok()) return Fail(std::string(reader.status().message()));
    absl::Status s = (*reader)->Query(f, [&](const AuditEntry& e) {
      printer.Row(e.chain.empty() ? absl::StrCat(e.seq) : absl::StrCat(e.chain, "/", e.seq),
                  knooppunt::audit::ToHex(e.hash), e.record);
      return true;
    });
    if (!s.ok()) return Fail(std::string(s.message()));
  }
  if (format == "table") std::printf("(%lld records)\n", static_cast<long long>(printer.rows()));
  return 0;
}

// An export directory: one chain's files, or (export --postgres) a directory per chain.
absl::StatusOr<knooppunt::audit::VerifyResult> VerifyExportDir(
    const std::string& dir, const std::vector<const knooppunt::audit::SignatureVerifier*>& keys) {
  std::vector<std::string> chains;
  std::error_code ec;
  bool files_here = false;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_directory()) chains.push_back(e.path().filename().string());
    if (absl::StartsWith(e.path().filename().string(), "audit-")) files_here = true;
  }
  if (files_here || chains.empty()) return knooppunt::audit::VerifyExport(dir, keys);
  std::sort(chains.begin(), chains.end());
  knooppunt::audit::VerifyResult total;
  for (const std::string& chain : chains) {
    auto one = knooppunt::audit::VerifyExport((std::filesystem::path(dir) / chain).string(), keys);
    if (!one.ok()) return one.status();
    total.chains.push_back({chain, one->records, one->checkpoints, one->first_seq, one->last_seq,
                            one->unsigned_tail});
    total.records += one->records;
    total.checkpoints += one->checkpoints;
    total.unsigned_tail += one->unsigned_tail;
    total.first_seq = one->first_seq;
    total.last_seq = one->last_seq;
    if (!one->intact && total.intact) {
      total.intact = false;
      total.bad_chain = chain;
      total.first_bad_seq = one->first_bad_seq;
      total.problem = absl::StrCat("chain ", chain, ": ", one->problem);
    }
  }
  return total;
}

int Verify() {
  if (absl::GetFlag(FLAGS_public_key).empty()) return Fail("verify needs --public_key");
  std::vector<std::unique_ptr<knooppunt::audit::SignatureVerifier>> owned;
  std::vector<const knooppunt::audit::SignatureVerifier*> keys;
  for (absl::string_view path : absl::StrSplit(absl::GetFlag(FLAGS_public_key), ',')) {
    auto key = knooppunt::audit::SignatureVerifier::FromPemFile(std::string(path));
    if (!key.ok()) return Fail(std::string(key.status().message()));
    keys.push_back(key->get());
    owned.push_back(*std::move(key));
  }
  absl::StatusOr<knooppunt::audit::VerifyResult> r;
  const absl::Time start = absl::Now();
  if (!absl::GetFlag(FLAGS_export_dir).empty()) {
    r = VerifyExportDir(absl::GetFlag(FLAGS_export_dir), keys);
  } else {
    if (!HaveLocal()) return Fail("verify needs --db, --postgres or --export_dir");
    auto reader = OpenLocal();
    if (!reader.ok()) return Fail(std::string(reader.status().message()));
    r = (*reader)->Verify(keys);
  }
  if (!r.ok()) return Fail(std::string(r.status().message()));
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  if (r->chains.size() > 1 || (r->chains.size() == 1 && !r->chains[0].name.empty())) {
    for (const auto& c : r->chains) {
      std::printf("chain %s: %lld records (seq %lld..%lld), %lld signed checkpoints, %lld not yet "
                  "under a checkpoint\n",
                  c.name.c_str(), static_cast<long long>(c.records),
                  static_cast<long long>(c.first_seq), static_cast<long long>(c.last_seq),
                  static_cast<long long>(c.checkpoints), static_cast<long long>(c.unsigned_tail));
    }
  }
  if (r->intact) {
    if (r->chains.size() > 1) {
      std::printf("INTACT: %zu chains, %lld records, %lld signed checkpoints, verified in %.3fs\n",
                  r->chains.size(), static_cast<long long>(r->records),
                  static_cast<long long>(r->checkpoints), secs);
      return 0;
    }
    std::printf("INTACT: %lld records (seq %lld..%lld), %lld signed checkpoints, verified in %.3fs",
                static_cast<long long>(r->records), static_cast<long long>(r->first_seq),
                static_cast<long long>(r->last_seq), static_cast<long long>(r->checkpoints), secs);
    if (r->unsigned_tail > 0) {
      std::printf("; the last %lld records are not yet under a checkpoint",
                  static_cast<long long>(r->unsigned_tail));
    }
    std::printf("\n");
    return 0;
  }
  if (!r->bad_chain.empty()) {
    std::printf("NOT INTACT: chain %s, first bad record %lld: %s\n", r->bad_chain.c_str(),
                static_cast<long long>(r->first_bad_seq), r->problem.c_str());
    return 1;
  }
  std::printf("NOT INTACT: first bad record %lld: %s\n", static_cast<long long>(r->first_bad_seq),
              r->problem.c_str());
  return 1;
}

int Export() {
  if (!HaveLocal() || absl::GetFlag(FLAGS_out).empty()) {
    return Fail("export needs --db (or --postgres) and --out");
  }
  auto reader = OpenLocal();
  if (!reader.ok()) return Fail(std::string(reader.status().message()));
  // SQLite: the one chain into --out. PostgreSQL: --chain into --out, or every chain into
  // --out/<chain>/.
  std::vector<std::pair<std::string, std::string>> jobs;  // chain, directory
  if (!(*reader)->multi_chain() || !absl::GetFlag(FLAGS_chain).empty()) {
    jobs.push_back({absl::GetFlag(FLAGS_chain), absl::GetFlag(FLAGS_out)});
  } else {
    auto chains = (*reader)->Chains();
    if (!chains.ok()) return Fail(std::string(chains.status().message()));
    for (const std::string& c : *chains) {
      jobs.push_back({c, (std::filesystem::path(absl::GetFlag(FLAGS_out)) /
                          knooppunt::audit::ChainDirectory(c)).string()});
    }
  }
  for (const auto& [chain, dir] : jobs) {
    absl::StatusOr<std::string> file = (*reader)->Export(dir, chain);
    if (!file.ok()) return Fail(std::string(file.status().message()));
    const std::string what = chain.empty() ? "" : absl::StrCat("chain ", chain, ": ");
    if (file->empty()) {
      std::printf("%snothing new to export\n", what.c_str());
    } else {
      std::printf("%sexported to %s\n", what.c_str(), file->c_str());
    }
  }
  return 0;
}

int InitKeys() {
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) return Fail("init-keys needs --dir");
  absl::Status s = knooppunt::audit::GenerateKeys(dir + "/audit-hmac.key", dir + "/audit-signing.key",
                                                  dir + "/audit-signing.pub");
  if (!s.ok()) return Fail(std::string(s.message()));
  std::printf("wrote %s/audit-hmac.key, %s/audit-signing.key (secret) and %s/audit-signing.pub\n",
              dir.c_str(), dir.c_str(), dir.c_str());
  return 0;
}

int Pseudonym() {
  absl::StatusOr<std::string> key = knooppunt::audit::ReadHmacKeyFile(absl::GetFlag(FLAGS_hmac_key));
  if (!key.ok()) return Fail(std::string(key.status().message()));
  std::printf("%s\n", knooppunt::audit::Pseudonym(*key, absl::GetFlag(FLAGS_bsn)).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "knooppunt-audit init-keys|verify|query|export|pseudonym [flags]\n"
      "  verify --db=FILE | --postgres=CONNINFO [--password_file=F] | --export_dir=DIR "
      "--public_key=PUB\n"
      "  query --db=FILE | --postgres=CONNINFO | --gateway=HOST:PORT ... [filters]\n"
      "  export --db=FILE | --postgres=CONNINFO [--chain=ID] --out=DIR\n"
      "--postgres reads an audit log shared by gateway replicas (one chain per instance_id): "
      "verify checks every chain, query lists them in time order, export writes DIR/<chain>/");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) return Fail("name one command: init-keys, verify, query, export, pseudonym");
  const std::string command = args[1];
  if (command == "verify") return Verify();
  if (command == "query") return Query();
  if (command == "export") return Export();
  if (command == "init-keys") return InitKeys();
  if (command == "pseudonym") return Pseudonym();
  return Fail(absl::StrCat("unknown command ", command));
}
