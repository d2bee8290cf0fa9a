// knooppunt-pki: the operator's certificate authority (gateway/pki/certificate_authority.h).
//
//   knooppunt-pki init          --ca_dir=D --name=NAME [--org=ORG] [--days=3650]
//   knooppunt-pki issue         --ca_dir=D --oin=OIN --org=ORG --cn=NAME [--dns=a,b] [--ip=..]
//                               [--days=365] --out=PREFIX [--force]
//   knooppunt-pki issue-gateway (as issue; --dns or --ip required)
//   knooppunt-pki renew         --ca_dir=D (--cert=FILE | --serial=S) [--keep_key] [--days=N]
//                               --out=PREFIX [--force]
//   knooppunt-pki revoke        --ca_dir=D --serial=S [--reason=unspecified]
//   knooppunt-pki crl           --ca_dir=D
//   knooppunt-pki list          --ca_dir=D [--warn_days=30]
//
// Exit status: 0 done, 1 the operation failed (message on stderr), 2 usage error.
// `list` exits 0 also when certificates expire or are revoked; it marks them instead.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway/pki/certificate_authority.h"
#include "gateway/pki/pki_files.h"

ABSL_FLAG(std::string, ca_dir, "", "the CA directory");
ABSL_FLAG(std::string, name, "", "init: the CA's common name (CN)");
ABSL_FLAG(std::string, org, "", "organisation (subject O); for init defaults to --name");
ABSL_FLAG(std::string, oin, "", "the organisation's OIN, 20 digits (subject serialNumber)");
ABSL_FLAG(std::string, cn, "", "subject common name (CN), e.g. the host name");
ABSL_FLAG(std::vector<std::string>, dns, {}, "subjectAltName DNS names, comma-separated");
ABSL_FLAG(std::vector<std::string>, ip, {}, "subjectAltName IP addresses, comma-separated");
ABSL_FLAG(int, days, 0,
          "validity in days (init: 3650, issue: 365, renew: as long as the certificate renewed)");
ABSL_FLAG(std::string, out, "", "output prefix: writes PREFIX.crt and PREFIX.key (mode 0600)");
ABSL_FLAG(bool, force, false, "replace existing PREFIX.crt / PREFIX.key");
ABSL_FLAG(std::string, cert, "", "renew: the certificate to renew (PEM file)");
ABSL_FLAG(std::string, serial, "", "the certificate's serial (hex, as `list` shows it)");
ABSL_FLAG(bool, keep_key, false, "renew: certify the same key again (no new key is written)");
ABSL_FLAG(std::string, reason, "unspecified",
          "revoke: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
          "cessationOfOperation");
ABSL_FLAG(int, warn_days, 30, "list: mark certificates expiring within this many days");
ABSL_FLAG(int, crl_days, 30, "init/revoke/crl: days until the new CRL's nextUpdate");

namespace kp = ::knooppunt::pki;

namespace {

constexpr char kUsage[] =
    "knooppunt-pki COMMAND [flags]: the operator's certificate authority.\n"
    "\n"
    "  init          --ca_dir=D --name=NAME [--org=ORG] [--days=3650]\n"
    "  issue         --ca_dir=D --oin=OIN --org=ORG --cn=NAME [--dns=a,b] [--ip=A,B]\n"
    "                [--days=365] --out=PREFIX [--force]\n"
    "  issue-gateway the gateway's own certificate; as issue, --dns or --ip required\n"
    "  renew         --ca_dir=D (--cert=FILE | --serial=S) [--keep_key] [--days=N]\n"
    "                --out=PREFIX [--force]\n"
    "  revoke        --ca_dir=D --serial=S [--reason=keyCompromise]   (regenerates the CRL)\n"
    "  crl           --ca_dir=D   (signs a fresh CRL; run it before the CRL's next update)\n"
    "  list          --ca_dir=D [--warn_days=30]\n"
    "\n"
    "See tools/pki/README.md.";

constexpr absl::Duration kCrlWarn = absl::Hours(24 * 7);

struct Command {
  std::set<std::string> flags;  // besides ca_dir
  int (*run)(const std::string& command);
};

void PrintError(const absl::Status& status) {
  std::fprintf(stderr, "knooppunt-pki: %s\n", std::string(status.message()).c_str());
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "knooppunt-pki: %s\n(run `knooppunt-pki --help` for usage)\n",
               message.c_str());
  return 2;
}

kp::CaOptions Options() {
  kp::CaOptions options;
  options.crl_validity = absl::Hours(24) * absl::GetFlag(FLAGS_crl_days);
  return options;
}

std::string Day(absl::Time t) { return absl::FormatTime("%Y-%m-%d %H:%M UTC", t, absl::UTCTimeZone()); }

// Checks that PREFIX.crt (and PREFIX.key when `with_key`) may be written, before the CA
// spends a serial on a certificate that could not be saved.
absl::Status CheckOutputs(const std::string& prefix, bool with_key) {
  if (prefix.empty()) return absl::InvalidArgumentError("--out is required");
  const size_t slash = prefix.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : prefix.substr(0, slash == 0 ? 1 : slash);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("--out: directory ", dir, " does not exist"));
  }
  if (absl::GetFlag(FLAGS_force)) return absl::OkStatus();
  for (const std::string& path : {prefix + ".crt", prefix + ".key"}) {
    if (!with_key && path == prefix + ".key") continue;
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
      std::fclose(f);
      return absl::AlreadyExistsError(
          absl::StrCat(path, " already exists; choose another --out or add --force"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteOutputs(const std::string& prefix, const kp::IssuedCertificate& issued) {
  const kp::Overwrite overwrite =
      absl::GetFlag(FLAGS_force) ? kp::Overwrite::kYes : kp::Overwrite::kNo;
  if (!issued.private_key_pem.empty()) {
    if (absl::Status s =
            kp::WriteFileAtomically(prefix + ".key", issued.private_key_pem, 0600, overwrite);
        !s.ok()) {
      return s;
    }
  }
  return kp::WriteFileAtomically(prefix + ".crt", issued.certificate_pem, 0644, overwrite);
}

void PrintIssued(absl::string_view verb, const kp::IssuedCertificate& issued,
                 const std::string& prefix) {
  const kp::CertificateRecord& r = issued.record;
  std::printf("%s serial %s (%s): OIN %s, O=%s, CN=%s, valid until %s\n",
              std::string(verb).c_str(), kp::SerialHex(r.serial).c_str(),
              std::string(kp::CertificateKindName(r.kind)).c_str(), r.oin.c_str(),
              r.organisation.c_str(), r.common_name.c_str(), Day(r.not_after).c_str());
  std::printf("  certificate: %s.crt\n", prefix.c_str());
  if (issued.private_key_pem.empty()) {
    std::printf("  key: unchanged (the key of the certificate renewed)\n");
  } else {
    std::printf("  private key: %s.key (mode 0600; hand it over securely, the CA keeps no copy)\n",
                prefix.c_str());
  }
}

int RunInit(const std::string&) {
  kp::InitRequest request;
  request.ca_dir = absl::GetFlag(FLAGS_ca_dir);
  request.name = absl::GetFlag(FLAGS_name);
  request.organisation = absl::GetFlag(FLAGS_org);
  if (absl::GetFlag(FLAGS_days) != 0) request.days = absl::GetFlag(FLAGS_days);
  absl::StatusOr<std::unique_ptr<kp::CertificateAuthority>> ca =
      kp::CertificateAuthority::Init(request, Options());
  if (!ca.ok()) {
    PrintError(ca.status());
    return 1;
  }
  std::printf("created CA %s in %s, valid until %s\n", (*ca)->ca_subject().c_str(),
              request.ca_dir.c_str(), Day((*ca)->ca_not_after()).c_str());
  std::printf("  trust root (gateway tls.client_ca_file): %s/ca.crt\n", request.ca_dir.c_str());
  std::printf("  CRL directory (gateway tls.crl_directory): %s\n", (*ca)->crl_directory().c_str());
  std::printf("  private key: %s/ca.key (mode 0600; keep it offline and backed up)\n",
              request.ca_dir.c_str());
  return 0;
}

int RunIssue(const std::string& command) {
  kp::IssueRequest request;
  request.kind =
      command == "issue-gateway" ? kp::CertificateKind::kGateway : kp::CertificateKind::kOrganisation;
  request.oin = absl::GetFlag(FLAGS_oin);
  request.organisation = absl::GetFlag(FLAGS_org);
  request.common_name = absl::GetFlag(FLAGS_cn);
  request.dns_names = absl::GetFlag(FLAGS_dns);
  request.ip_addresses = absl::GetFlag(FLAGS_ip);
  if (absl::GetFlag(FLAGS_days) != 0) request.days = absl::GetFlag(FLAGS_days);
  const std::string prefix = absl::GetFlag(FLAGS_out);
  if (prefix.empty()) return UsageError("--out is required");
  if (absl::Status s = CheckOutputs(prefix, true); !s.ok()) {
    PrintError(s);
    return 1;
  }
  absl::StatusOr<std::unique_ptr<kp::CertificateAuthority>> ca =
      kp::CertificateAuthority::Open(absl::GetFlag(FLAGS_ca_dir), Options());
  if (!ca.ok()) {
    PrintError(ca.status());
    return 1;
  }
  absl::StatusOr<kp::IssuedCertificate> issued = (*ca)->Issue(request);
  if (!issued.ok()) {
    PrintError(issued.status());
    return 1;
  }
  if (absl::Status s = WriteOutputs(prefix, *issued); !s.ok()) {
    PrintError(s);
    return 1;
  }
  PrintIssued("issued", *issued, prefix);
  return 0;
}

int RunRenew(const std::string&) {
  kp::RenewRequest request;
  const std::string cert_file = absl::GetFlag(FLAGS_cert);
  const std::string serial = absl::GetFlag(FLAGS_serial);
  if (cert_file.empty() == serial.empty()) {
    return UsageError("renew needs exactly one of --cert and --serial");
  }
  if (!serial.empty()) {
    absl::StatusOr<uint64_t> parsed = kp::ParseSerial(serial);
    if (!parsed.ok()) return UsageError(std::string(parsed.status().message()));
    request.serial = *parsed;
  } else {
    absl::StatusOr<std::string> pem = kp::ReadWholeFile(cert_file);
    if (!pem.ok()) {
      PrintError(pem.status());
      return 1;
    }
    request.certificate_pem = *std::move(pem);
  }
  request.keep_key = absl::GetFlag(FLAGS_keep_key);
  request.days = absl::GetFlag(FLAGS_days);
  const std::string prefix = absl::GetFlag(FLAGS_out);
  if (prefix.empty()) return UsageError("--out is required");
  if (absl::Status s = CheckOutputs(prefix, !request.keep_key); !s.ok()) {
    PrintError(s);
    return 1;
  }
  absl::StatusOr<std::unique_ptr<kp::CertificateAuthority>> ca =
      kp::CertificateAuthority::Open(absl::GetFlag(FLAGS_ca_dir), Options());
  if (!ca.ok()) {
    PrintError(ca.status());
    return 1;
  }
  absl::StatusOr<kp::IssuedCertificate> issued = (*ca)->Renew(request);
  if (!issued.ok()) {
    PrintError(issued.status());
    return 1;
  }
  if (absl::Status s = WriteOutputs(prefix, *issued); !s.ok()) {
    PrintError(s);
    return 1;
  }
  PrintIssued(absl::StrCat("renewed ", kp::SerialHex(*issued->record.renewed_from), " as"),
              *issued, prefix);
  std::printf("  the old certificate stays valid until it expires; revoke it once the new one "
              "is in use\n");
  return 0;
}

int RunRevoke(const std::string&) {
  const std::string serial_text = absl::GetFlag(FLAGS_serial);
  if (serial_text.empty()) return UsageError("--serial is required");
  absl::StatusOr<uint64_t> serial = kp::ParseSerial(serial_text);
  if (!serial.ok()) return UsageError(std::string(serial.status().message()));
  absl::StatusOr<kp::RevocationReason> reason =
      kp::ParseRevocationReason(absl::GetFlag(FLAGS_reason));
  if (!reason.ok()) return UsageError(std::string(reason.status().message()));
  absl::StatusOr<std::unique_ptr<kp::CertificateAuthority>> ca =
      kp::CertificateAuthority::Open(absl::GetFlag(FLAGS_ca_dir), Options());
  if (!ca.ok()) {
    PrintError(ca.status());
    return 1;
  }
  absl::StatusOr<kp::CertificateRecord> revoked = (*ca)->Revoke(*serial, *reason);
  if (!revoked.ok()) {
    PrintError(revoked.status());
    return 1;
  }
  std::printf("revoked serial %s (OIN %s, CN=%s), reason %s\n",
              kp::SerialHex(revoked->serial).c_str(), revoked->oin.c_str(),
              revoked->common_name.c_str(),
              std::string(kp::RevocationReasonName(revoked->reason)).c_str());
  std::printf("  CRL regenerated: %s and %s (the gateway re-reads its crl_directory)\n",
              (*ca)->crl_path().c_str(), (*ca)->crl_hash_path().c_str());
  return 0;
}

int RunCrl(const std::string&) {
  absl::StatusOr<std::unique_ptr<kp::CertificateAuthority>> ca =
      kp::CertificateAuthority::Open(absl::GetFlag(FLAGS_ca_dir), Options());
  if (!ca.ok()) {
    PrintError(ca.status());
    return 1;
  }
  if (absl::Status s = (*ca)->RegenerateCrl(); !s.ok()) {
    PrintError(s);
    return 1;
  }
  absl::StatusOr<kp::CaState> state = (*ca)->State();
  if (!state.ok()) {
    PrintError(state.status());
    return 1;
  }
  std::printf("CRL %llu signed, next update %s: %s and %s\n",
              static_cast<unsigned long long>(state->crl_number),
              Day(state->crl_next_update).c_str(), (*ca)->crl_path().c_str(),
              (*ca)->crl_hash_path().c_str());
  return 0;
}

int RunList(const std::string&) {
  const int warn_days = absl::GetFlag(FLAGS_warn_days);
  if (warn_days < 0) return UsageError("--warn_days must not be negative");
  absl::StatusOr<std::unique_ptr<kp::CertificateAuthority>> ca =
      kp::CertificateAuthority::Open(absl::GetFlag(FLAGS_ca_dir), Options());
  if (!ca.ok()) {
    PrintError(ca.status());
    return 1;
  }
  absl::StatusOr<kp::CaState> state = (*ca)->State();
  if (!state.ok()) {
    PrintError(state.status());
    return 1;
  }
  const absl::Time now = absl::Now();
  const absl::Duration warn = absl::Hours(24) * warn_days;
  auto mark = [&](absl::Time until, absl::Duration within) -> std::string {
    if (until <= now) return "  EXPIRED";
    if (until - now <= within) return "  EXPIRING";
    return "";
  };
  // A CRL lives for weeks, not years: it is marked when its next update is a week away.
  const std::string crl_mark = mark(state->crl_next_update, kCrlWarn);
  std::printf("CA   %s, valid until %s (%lld days left)%s\n", (*ca)->ca_subject().c_str(),
              Day((*ca)->ca_not_after()).c_str(),
              static_cast<long long>(kp::DaysLeft((*ca)->ca_not_after(), now)),
              mark((*ca)->ca_not_after(), warn).c_str());
  std::printf("CRL  number %llu, next update %s (%lld days left)%s\n",
              static_cast<unsigned long long>(state->crl_number),
              Day(state->crl_next_update).c_str(),
              static_cast<long long>(kp::DaysLeft(state->crl_next_update, now)),
              (crl_mark.empty() ? crl_mark : crl_mark + " (run `knooppunt-pki crl`)").c_str());
  std::printf("\n");

  std::vector<std::vector<std::string>> rows = {
      {"SERIAL", "KIND", "OIN", "CN", "NOT AFTER", "DAYS LEFT", "STATUS", "NOTE"}};
  for (const kp::CertificateRecord& r : state->certificates) {
    std::string note;
    if (r.revoked_at) {
      note = absl::StrCat(kp::RevocationReasonName(r.reason), " on ",
                          absl::FormatTime("%Y-%m-%d", *r.revoked_at, absl::UTCTimeZone()));
    }
    if (r.renewed_from) {
      absl::StrAppend(&note, note.empty() ? "" : "; ", "renews ", kp::SerialHex(*r.renewed_from));
    }
    rows.push_back({kp::SerialHex(r.serial), std::string(kp::CertificateKindName(r.kind)), r.oin,
                    r.common_name, Day(r.not_after), absl::StrCat(kp::DaysLeft(r.not_after, now)),
                    std::string(kp::CertificateStatusName(kp::StatusAt(r, now, warn))), note});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i + 1 == row.size()) {
        line += row[i];
      } else {
        absl::StrAppend(&line, row[i], std::string(width[i] - row[i].size() + 2, ' '));
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
  if (state->certificates.empty()) std::printf("(no certificates issued yet)\n");
  return 0;
}

const std::map<std::string, Command>& Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"init", {{"name", "org", "days", "crl_days"}, RunInit}},
      {"issue", {{"oin", "org", "cn", "dns", "ip", "days", "out", "force"}, RunIssue}},
      {"issue-gateway", {{"oin", "org", "cn", "dns", "ip", "days", "out", "force"}, RunIssue}},
      {"renew", {{"cert", "serial", "keep_key", "days", "out", "force"}, RunRenew}},
      {"revoke", {{"serial", "reason", "crl_days"}, RunRevoke}},
      {"crl", {{"crl_days"}, RunCrl}},
      {"list", {{"warn_days"}, RunList}},
  };
  return *commands;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "tools/pki/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return UsageError("a command is required: init, issue, issue-gateway, renew, revoke, crl or list");
  if (args.size() > 2) {
    return UsageError(absl::StrCat("unexpected argument '", args[2],
                                   "' (values go in flags, e.g. --cn=NAME)"));
  }
  const std::string command = args[1];
  auto it = Commands().find(command);
  if (it == Commands().end()) {
    return UsageError(absl::StrCat("unknown command '", command,
                                   "'; commands: init, issue, issue-gateway, renew, revoke, crl, list"));
  }
  // A flag that does not apply to the command is an error, not silently ignored (detected by
  // its value differing from the default; abseil does not expose "given on the command line").
  for (const char* flag : {"name", "org", "oin", "cn", "dns", "ip", "days", "out", "force", "cert",
                           "serial", "keep_key", "reason", "warn_days", "crl_days"}) {
    const absl::CommandLineFlag* f = absl::FindCommandLineFlag(flag);
    if (f != nullptr && f->CurrentValue() != f->DefaultValue() && it->second.flags.count(flag) == 0) {
      return UsageError(absl::StrCat("--", flag, " does not apply to `", command, "`"));
    }
  }
  if (absl::GetFlag(FLAGS_ca_dir).empty()) return UsageError("--ca_dir is required");
  if (absl::GetFlag(FLAGS_crl_days) < 1) return UsageError("--crl_days must be at least 1");
  return it->second.run(command);
}
