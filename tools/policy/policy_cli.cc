// knooppunt-policy: operator tooling for registry and agreements, on the gateway's own policy
// code (the same loader, validation and decision as the running gateway).
//
//   knooppunt-policy check POLICY...
//   knooppunt-policy explain POLICY --from=OIN --to=RECIPIENT --type=TYPE --purpose=P
//                            [--mode=bevraging|melding] [--at=RFC3339]
//   knooppunt-policy diff OLD NEW
//
// POLICY is a gateway.yaml (its registry, agreements and descriptor sets) or a directory with
// registry.yaml and agreements/ (like policies/). Exit status: 0 valid / allowed / no
// difference; 1 invalid / denied / differences; 2 usage error or unreadable input.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gateway/policy/policy_snapshot.h"
#include "gateway/server/gateway_config.h"
#include "gateway/server/message_types.h"

ABSL_FLAG(std::string, from, "", "explain: sender OIN");
ABSL_FLAG(std::string, to, "", "explain: recipient (OIN or gemeente:<code>)");
ABSL_FLAG(std::string, type, "", "explain: message type, e.g. gemeente.brp.v1.PersoonVraag");
ABSL_FLAG(std::string, purpose, "", "explain: purpose (doelbinding)");
ABSL_FLAG(std::string, mode, "", "explain: bevraging or melding; empty: either");
ABSL_FLAG(std::string, at, "", "explain: moment (RFC 3339, e.g. 2026-06-01T12:00:00Z); empty: now");

namespace {

using knooppunt::policy::CompiledAgreement;
using knooppunt::policy::PolicySnapshot;
namespace config = knooppunt::config;

struct LoadedPolicy {
  std::unique_ptr<google::protobuf::DescriptorPool> types;  // outlives `snapshot`
  std::shared_ptr<const PolicySnapshot> snapshot;
};

absl::StatusOr<LoadedPolicy> Load(const std::string& location) {
  knooppunt::policy::PolicySources sources;
  std::vector<std::string> descriptor_sets;
  if (std::filesystem::is_directory(location)) {
    sources.registry_file = (std::filesystem::path(location) / "registry.yaml").string();
    sources.agreement_dirs = {(std::filesystem::path(location) / "agreements").string()};
  } else {
    absl::StatusOr<config::v1::GatewayConfig> cfg = knooppunt::server::LoadGatewayConfig(location);
    if (!cfg.ok()) return cfg.status();
    sources = knooppunt::server::PolicySourcesOf(*cfg);
    descriptor_sets.assign(cfg->descriptor_set_files().begin(), cfg->descriptor_set_files().end());
  }
  LoadedPolicy out;
  absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> types =
      knooppunt::server::LoadMessageTypes(descriptor_sets);
  if (!types.ok()) return types.status();
  out.types = *std::move(types);
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> snapshot =
      knooppunt::policy::LoadPolicy(sources, *out.types);
  if (!snapshot.ok()) return snapshot.status();
  out.snapshot = *std::move(snapshot);
  return out;
}

std::string ModeName(config::v1::ExchangeMode mode) {
  return mode == config::v1::EXCHANGE_MODE_BEVRAGING ? "bevraging" : "melding";
}

std::string Period(const CompiledAgreement& a) {
  auto fmt = [](absl::Time t) {
    if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return std::string("(open)");
    return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
  };
  return absl::StrCat(fmt(a.valid_from), " .. ", fmt(a.valid_until));
}

std::string Fields(const knooppunt::transform::FieldPlan& plan) {
  return plan.all() ? "all fields" : absl::StrJoin(plan.AllowedPaths(), ", ");
}

std::string Party(const PolicySnapshot& p, const std::string& oin) {
  const knooppunt::policy::Organisation* org = p.registry.FindByOin(oin);
  return org == nullptr ? oin : absl::StrCat(oin, " (", org->name, ")");
}

int Check(const std::vector<std::string>& locations) {
  int status = 0;
  for (const std::string& location : locations) {
    absl::StatusOr<LoadedPolicy> p = Load(location);
    if (!p.ok()) {
      std::fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
      status = 1;
      continue;
    }
    std::printf("%s: valid, %zu organisations, %zu agreements, version %s\n", location.c_str(),
                p->snapshot->registry.organisations().size(),
                p->snapshot->agreements.agreements().size(), p->snapshot->version.c_str());
  }
  return status;
}

int Explain(const std::string& location) {
  const std::string from = absl::GetFlag(FLAGS_from), to = absl::GetFlag(FLAGS_to),
                    type = absl::GetFlag(FLAGS_type), purpose = absl::GetFlag(FLAGS_purpose),
                    mode_flag = absl::GetFlag(FLAGS_mode), at_flag = absl::GetFlag(FLAGS_at);
  if (from.empty() || to.empty() || type.empty() || purpose.empty()) {
    std::fprintf(stderr, "explain needs --from, --to, --type and --purpose\n");
    return 2;
  }
  absl::Time at = absl::Now();
  std::string error;
  if (!at_flag.empty() && !absl::ParseTime(absl::RFC3339_full, at_flag, &at, &error)) {
    std::fprintf(stderr, "--at: %s\n", error.c_str());
    return 2;
  }
  std::vector<config::v1::ExchangeMode> modes;
  if (mode_flag.empty() || mode_flag == "bevraging") modes.push_back(config::v1::EXCHANGE_MODE_BEVRAGING);
  if (mode_flag.empty() || mode_flag == "melding") modes.push_back(config::v1::EXCHANGE_MODE_MELDING);
  if (modes.empty()) {
    std::fprintf(stderr, "--mode is bevraging or melding\n");
    return 2;
  }
  absl::StatusOr<LoadedPolicy> p = Load(location);
  if (!p.ok()) {
    std::fprintf(stderr, "%s\n", std::string(p.status().message()).c_str());
    return 2;
  }
  const PolicySnapshot& policy = *p->snapshot;
  absl::StatusOr<const knooppunt::policy::Organisation*> recipient =
      policy.registry.ResolveRecipient(to);
  if (!recipient.ok()) {
    std::printf("DENIED: %s\n", std::string(recipient.status().message()).c_str());
    return 1;
  }
  knooppunt::policy::Decision best;
  for (config::v1::ExchangeMode mode : modes) {
    knooppunt::policy::Decision d =
        policy.agreements.Decide({from, (*recipient)->oin, type, purpose, mode, at});
    if (d.allowed() || best.reason.empty() || best.denied_on == knooppunt::policy::DeniedOn::kMode) {
      best = std::move(d);
    }
    if (best.allowed()) break;
  }
  std::printf("at %s, %s -> %s, %s, purpose %s:\n",
              absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", at, absl::UTCTimeZone()).c_str(),
              Party(policy, from).c_str(), Party(policy, (*recipient)->oin).c_str(), type.c_str(),
              purpose.c_str());
  if (!best.allowed()) {
    std::printf("DENIED (%s): %s\n", std::string(DeniedOnName(best.denied_on)).c_str(),
                best.reason.c_str());
    return 1;
  }
  const CompiledAgreement& a = *best.agreement;
  std::printf("ALLOWED by agreement %s (%s)\n", a.id.c_str(), a.source.c_str());
  std::printf("  why:          the sender is in its from list, the recipient in its to list,\n"
              "                purpose %s is listed, mode %s, in force %s\n",
              purpose.c_str(), ModeName(a.mode).c_str(), Period(a).c_str());
  std::printf("  fields:       %s\n", Fields(a.fields).c_str());
  if (!a.reply_type.empty()) {
    std::printf("  reply:        %s, fields: %s\n", a.reply_type.c_str(), Fields(a.reply_fields).c_str());
  }
  if (a.has_rate) {
    std::printf("  rate limit:   %g/s, burst %g, per %s\n", a.rate.per_second, a.rate.burst,
                a.rate_per_sender ? "sender" : "agreement");
  }
  return 0;
}

// What one (sender, recipient, type, purpose, mode) may do under a policy.
using Grant = std::tuple<std::string, std::string, std::string, std::string, std::string>;
struct GrantFields {
  std::set<std::string> fields, reply_fields;  // "*" for all
  std::set<std::string> agreements;
};

std::map<Grant, GrantFields> Grants(const PolicySnapshot& p) {
  std::map<Grant, GrantFields> out;
  for (const CompiledAgreement& a : p.agreements.agreements()) {
    const std::vector<std::string> fields = a.fields.AllowedPaths();
    const std::vector<std::string> reply = a.reply_type.empty() ? std::vector<std::string>{}
                                                                : a.reply_fields.AllowedPaths();
    for (const std::string& s : a.senders) {
      for (const std::string& r : a.recipients) {
        for (const std::string& purpose : a.purposes) {
          GrantFields& g = out[{s, a.message_type, r, purpose, ModeName(a.mode)}];
          g.fields.insert(fields.begin(), fields.end());
          g.reply_fields.insert(reply.begin(), reply.end());
          g.agreements.insert(a.id);
        }
      }
    }
  }
  return out;
}

std::string Describe(const PolicySnapshot& p, const Grant& g) {
  const auto& [sender, type, recipient, purpose, mode] = g;
  return absl::StrCat(Party(p, sender), ": ", type, " (", mode, ") to ", Party(p, recipient),
                      " for purpose ", purpose);
}

std::vector<std::string> Minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::vector<std::string> out;
  for (const std::string& x : a) {
    if (!b.count(x)) out.push_back(x == "*" ? "all fields" : x);
  }
  return out;
}

int Diff(const std::string& old_location, const std::string& new_location) {
  absl::StatusOr<LoadedPolicy> old_policy = Load(old_location);
  absl::StatusOr<LoadedPolicy> new_policy = Load(new_location);
  for (const auto* p : {&old_policy, &new_policy}) {
    if (!p->ok()) {
      std::fprintf(stderr, "%s\n", std::string(p->status().message()).c_str());
      return 2;
    }
  }
  const PolicySnapshot& o = *old_policy->snapshot;
  const PolicySnapshot& n = *new_policy->snapshot;
  const std::map<Grant, GrantFields> before = Grants(o), after = Grants(n);
  int changes = 0;
  for (const auto& [grant, g] : before) {
    if (!after.count(grant)) {
      std::printf("- loses  %s\n", Describe(o, grant).c_str());
      ++changes;
    }
  }
  for (const auto& [grant, g] : after) {
    auto it = before.find(grant);
    if (it == before.end()) {
      std::printf("+ gains  %s (fields: %s)\n", Describe(n, grant).c_str(),
                  absl::StrJoin(Minus(g.fields, {}), ", ").c_str());
      ++changes;
      continue;
    }
    const std::pair<const char*, std::pair<const std::set<std::string>*, const std::set<std::string>*>>
        sides[] = {{"fields", {&it->second.fields, &g.fields}},
                   {"reply fields", {&it->second.reply_fields, &g.reply_fields}}};
    for (const auto& [what, sets] : sides) {
      const std::vector<std::string> gained = Minus(*sets.second, *sets.first);
      const std::vector<std::string> lost = Minus(*sets.first, *sets.second);
      if (!gained.empty()) {
        std::printf("+ gains  %s: %s %s\n", Describe(n, grant).c_str(), what,
                    absl::StrJoin(gained, ", ").c_str());
        ++changes;
      }
      if (!lost.empty()) {
        std::printf("- loses  %s: %s %s\n", Describe(n, grant).c_str(), what,
                    absl::StrJoin(lost, ", ").c_str());
        ++changes;
      }
    }
  }
  if (changes == 0) std::printf("no differences in who may exchange what\n");
  return changes == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "knooppunt-policy check POLICY... | explain POLICY --from --to --type --purpose "
      "[--mode] [--at] | diff OLD NEW\n(POLICY: a gateway.yaml, or a directory with "
      "registry.yaml and agreements/)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string command = args.size() > 1 ? args[1] : "";
  std::vector<std::string> rest(args.size() > 2 ? args.begin() + 2 : args.end(), args.end());
  if (command == "check" && !rest.empty()) return Check(rest);
  if (command == "explain" && rest.size() == 1) return Explain(rest[0]);
  if (command == "diff" && rest.size() == 2) return Diff(rest[0], rest[1]);
  std::fprintf(stderr, "usage: %s\n", absl::ProgramUsageMessage().data());
  return 2;
}
