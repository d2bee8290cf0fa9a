#include "gateway/policy/registry.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/ids.h"

namespace knooppunt::policy {
namespace {

constexpr absl::string_view kGroupPrefix = "group:";
constexpr absl::string_view kGemeentePrefix = "gemeente:";

bool IsValidGroupName(absl::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '-' || c == '_';
  });
}

// "host:port": a host without whitespace (or "[v6]"), a port of 1–5 digits in 1..65535.
bool IsValidHostPort(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  const absl::string_view host = address.substr(0, colon);
  const absl::string_view port = address.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return absl::ascii_isdigit(c); })) {
    return false;
  }
  const bool bracketed_v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
  const bool plain_host = std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isgraph(c) && c != ':' && c != '[' && c != ']';
  });
  if (!bracketed_v6 && !plain_host) return false;
  uint32_t number = 0;
  return absl::SimpleAtoi(port, &number) && number >= 1 && number <= 65535;
}

}  // namespace

absl::StatusOr<Registry> Registry::Build(const config::v1::Registry& proto,
                                         const config::SourceMap& source) {
  Registry registry;
  for (int i = 0; i < proto.groups_size(); ++i) {
    const auto& group = proto.groups(i);
    const std::string path = absl::StrCat("groups[", i, "]");
    if (!IsValidGroupName(group.name())) {
      return source.Error(absl::StrCat(path, ".name"),
                          "group name must be letters, digits, '-' or '_'");
    }
    if (!registry.group_members_.emplace(group.name(), std::vector<std::string>()).second) {
      return source.Error(path, absl::StrCat("group '", group.name(), "' declared twice"));
    }
  }
  for (int i = 0; i < proto.organisations_size(); ++i) {
    const auto& org = proto.organisations(i);
    const std::string path = absl::StrCat("organisations[", i, "]");
    if (!IsValidOin(org.oin())) {
      return source.Error(absl::StrCat(path, ".oin"),
                          absl::StrCat("OIN must be exactly 20 digits, got '", org.oin(), "'"));
    }
    if (registry.by_oin_.contains(org.oin())) {
      return source.Error(absl::StrCat(path, ".oin"),
                          absl::StrCat("OIN ", org.oin(), " is registered twice"));
    }
    if (org.name().empty()) return source.Error(path, "organisation needs a name");
    if (org.kind() == config::v1::ORGANISATION_KIND_UNSPECIFIED) {
      return source.Error(path, "organisation needs a kind");
    }
    const bool municipality = org.kind() == config::v1::ORGANISATION_KIND_MUNICIPALITY;
    if (municipality && !IsValidGemeentecode(org.gemeentecode())) {
      return source.Error(absl::StrCat(path, ".gemeentecode"),
                          "a municipality needs a 4-digit gemeentecode");
    }
    if (!municipality && !org.gemeentecode().empty()) {
      return source.Error(absl::StrCat(path, ".gemeentecode"),
                          "only a municipality has a gemeentecode");
    }
    if (municipality && registry.by_gemeentecode_.contains(org.gemeentecode())) {
      return source.Error(absl::StrCat(path, ".gemeentecode"),
                          absl::StrCat("gemeentecode ", org.gemeentecode(), " is used twice"));
    }
    if (org.has_endpoint() && !IsValidHostPort(org.endpoint().address())) {
      return source.Error(absl::StrCat(path, ".endpoint.address"),
                          "endpoint address must be host:port");
    }
    Organisation compiled;
    compiled.oin = org.oin();
    compiled.name = org.name();
    compiled.kind = org.kind();
    compiled.gemeentecode = org.gemeentecode();
    if (org.has_endpoint()) {
      compiled.endpoint_address = org.endpoint().address();
      compiled.tls_server_name = org.endpoint().tls_server_name();
    }
    for (int g = 0; g < org.groups_size(); ++g) {
      auto members = registry.group_members_.find(org.groups(g));
      if (members == registry.group_members_.end()) {
        return source.Error(absl::StrCat(path, ".groups[", g, "]"),
                            absl::StrCat("unknown group '", org.groups(g),
                                         "' (declare it under groups:)"));
      }
      members->second.push_back(org.oin());
      compiled.groups.push_back(org.groups(g));
    }
    const size_t index = registry.organisations_.size();
    registry.by_oin_.emplace(compiled.oin, index);
    if (municipality) registry.by_gemeentecode_.emplace(compiled.gemeentecode, index);
    registry.organisations_.push_back(std::move(compiled));
  }
  return registry;
}

const Organisation* Registry::FindByOin(absl::string_view oin) const {
  auto it = by_oin_.find(oin);
  return it == by_oin_.end() ? nullptr : &organisations_[it->second];
}

absl::StatusOr<const Organisation*> Registry::ResolveRecipient(absl::string_view recipient) const {
  if (absl::StartsWith(recipient, kGemeentePrefix)) {
    const absl::string_view code = recipient.substr(kGemeentePrefix.size());
    if (!IsValidGemeentecode(code)) {
      return absl::InvalidArgumentError("recipient gemeente:<code> needs a 4-digit gemeentecode");
    }
    auto it = by_gemeentecode_.find(code);
    if (it == by_gemeentecode_.end()) {
      return absl::NotFoundError(absl::StrCat("no municipality with gemeentecode ", code,
                                              " is registered"));
    }
    return &organisations_[it->second];
  }
  if (!IsValidOin(recipient)) {
    return absl::InvalidArgumentError(
        "recipient must be an OIN (20 digits) or gemeente:<4-digit code>");
  }
  const Organisation* org = FindByOin(recipient);
  if (org == nullptr) {
    return absl::NotFoundError(absl::StrCat("recipient ", recipient, " is not registered"));
  }
  return org;
}

absl::StatusOr<std::vector<std::string>> Registry::ExpandPartyRef(absl::string_view ref) const {
  if (absl::StartsWith(ref, kGroupPrefix)) {
    auto it = group_members_.find(ref.substr(kGroupPrefix.size()));
    if (it == group_members_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown group '", ref, "'"));
    }
    return it->second;
  }
  if (absl::StartsWith(ref, kGemeentePrefix)) {
    const absl::string_view code = ref.substr(kGemeentePrefix.size());
    if (!IsValidGemeentecode(code)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", ref, "': gemeente:<code> needs a 4-digit gemeentecode"));
    }
    auto it = by_gemeentecode_.find(code);
    if (it == by_gemeentecode_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("no municipality with gemeentecode ", code, " is registered"));
    }
    return std::vector<std::string>{organisations_[it->second].oin};
  }
  if (!IsValidOin(ref)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", ref, "' is neither an OIN (20 digits), group:<name> nor gemeente:<code>"));
  }
  if (FindByOin(ref) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("OIN ", ref, " is not in the registry"));
  }
  return std::vector<std::string>{std::string(ref)};
}

}  // namespace knooppunt::policy
