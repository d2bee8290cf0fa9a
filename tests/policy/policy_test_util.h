// Helpers shared by the policy tests: YAML text → Registry / AgreementFile, and the
// message types the agreements may name.
#ifndef KNOOPPUNT_TESTS_POLICY_POLICY_TEST_UTIL_H_
#define KNOOPPUNT_TESTS_POLICY_POLICY_TEST_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gateway/config/yaml_proto.h"
#include "gateway/policy/agreement_book.h"
#include "gateway/policy/registry.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/overlijden/v1/overlijden.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "gemeente/zaken/v1/zaken.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace knooppunt::policy::test {

inline constexpr absl::string_view kVerhuizen = "00000099100000000001";
inline constexpr absl::string_view kBrp = "00000099200000000001";
inline constexpr absl::string_view kGroningen = "00000099300000000014";
inline constexpr absl::string_view kZaanstad = "00000099300000000479";
inline constexpr absl::string_view kAmsterdam = "00000099300000000363";
inline constexpr absl::string_view kAuditor = "00000099400000000001";

// The generated pool with the domain message types registered.
inline const google::protobuf::DescriptorPool& DomainTypes() {
  gemeente::brp::v1::Persoon::descriptor();
  gemeente::verhuizen::v1::Verhuismelding::descriptor();
  gemeente::overlijden::v1::AangifteOverlijden::descriptor();
  gemeente::zaken::v1::ZaakAanmaken::descriptor();
  return *google::protobuf::DescriptorPool::generated_pool();
}

// A registry of the demo federation; line numbers are referenced by no test.
inline constexpr absl::string_view kRegistryYaml = R"yaml(groups:
  - name: gemeenten
  - name: brp-afnemers
  - name: leeg
organisations:
  - oin: "00000099100000000001"
    name: Verhuizen
    kind: collective_service
  - oin: "00000099200000000001"
    name: BRP Bevragen
    kind: register
    endpoint:
      address: 127.0.0.1:18501
  - oin: "00000099300000000014"
    name: Gemeente Groningen
    kind: municipality
    gemeentecode: "0014"
    endpoint:
      address: groningen.knooppunt.test:443
      tls_server_name: groningen.knooppunt.test
    groups: [gemeenten, brp-afnemers]
  - oin: "00000099300000000479"
    name: Gemeente Zaanstad
    kind: municipality
    gemeentecode: "0479"
    groups: [gemeenten]
  - oin: "00000099300000000363"
    name: Gemeente Amsterdam
    kind: municipality
    gemeentecode: "0363"
    groups: [gemeenten, brp-afnemers]
  - oin: "00000099400000000001"
    name: Auditdienst
    kind: auditor
)yaml";

// Parses and builds a registry; a parse error is returned as is.
inline absl::StatusOr<Registry> RegistryFromYaml(absl::string_view yaml,
                                                 absl::string_view file = "registry.yaml") {
  config::v1::Registry proto;
  absl::StatusOr<config::SourceMap> source = config::ParseYamlToProto(yaml, file, &proto);
  if (!source.ok()) return source.status();
  return Registry::Build(proto, *source);
}

// Parses one agreements file; aborts the test on a YAML error.
inline AgreementFile AgreementFileFromYaml(absl::string_view yaml, absl::string_view file) {
  AgreementFile out;
  absl::StatusOr<config::SourceMap> source =
      config::ParseYamlToProto(yaml, file, &out.agreements);
  EXPECT_TRUE(source.ok()) << source.status();
  if (source.ok()) out.source = *std::move(source);
  return out;
}

// Matches an INVALID_ARGUMENT status whose message starts with "<file>:<line>:" and contains
// `text`.
MATCHER_P3(IsErrorAt, file, line, text,
           absl::StrCat("is INVALID_ARGUMENT at ", file, ":", line, " mentioning '", text,
                        "'")) {
  const absl::Status& status = arg;
  const std::string prefix = absl::StrCat(file, ":", line, ":");
  return status.code() == absl::StatusCode::kInvalidArgument &&
         absl::StartsWith(status.message(), prefix) &&
         absl::StrContains(status.message(), text);
}

}  // namespace knooppunt::policy::test

#endif  // KNOOPPUNT_TESTS_POLICY_POLICY_TEST_UTIL_H_
