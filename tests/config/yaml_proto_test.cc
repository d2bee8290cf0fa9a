#include "gateway/config/yaml_proto.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "yaml_proto_test.pb.h"

namespace knooppunt::config {
namespace {

using ::knooppunt::testing::yamlproto::Config;
using ::knooppunt::testing::yamlproto::Mode;
using ::knooppunt::testing::yamlproto::Tree;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kFile[] = "cfg.yaml";

// Parses `yaml` into a Config and expects success.
Config MustParse(const std::string& yaml, SourceMap* map_out = nullptr) {
  Config config;
  absl::StatusOr<SourceMap> map = ParseYamlToProto(yaml, kFile, &config);
  EXPECT_TRUE(map.ok()) << map.status();
  if (map.ok() && map_out != nullptr) *map_out = *map;
  return config;
}

// Parses `yaml` into a Config and returns the error message ("" if it parsed).
std::string ErrorOf(const std::string& yaml) {
  Config config;
  config.set_name("stale");
  absl::StatusOr<SourceMap> map = ParseYamlToProto(yaml, kFile, &config);
  if (map.ok()) return "";
  EXPECT_EQ(map.status().code(), absl::StatusCode::kInvalidArgument);
  // On error the message is left cleared, never half-filled.
  EXPECT_EQ(config.ByteSizeLong(), 0u) << config.ShortDebugString();
  return std::string(map.status().message());
}

// ---------------------------------------------------------------------------------------
// Scalars

TEST(YamlProtoTest, AllScalarKinds) {
  const Config c = MustParse(
      "scalars:\n"
      "  s: hallo wereld\n"
      "  i32: -2147483648\n"
      "  i64: 9223372036854775807\n"
      "  u32: 4294967295\n"
      "  u64: 18446744073709551615\n"
      "  si32: -5\n"
      "  si64: -6000000000\n"
      "  fx32: 7\n"
      "  fx64: +8\n"
      "  sfx32: -9\n"
      "  sfx64: \"-10\"\n"
      "  flag: TRUE\n"
      "  dbl: 1.5e3\n"
      "  flt: -0.25\n"
      "  raw: 'ab\\x01'\n");
  const auto& s = c.scalars();
  EXPECT_EQ(s.s(), "hallo wereld");
  EXPECT_EQ(s.i32(), -2147483647 - 1);
  EXPECT_EQ(s.i64(), 9223372036854775807LL);
  EXPECT_EQ(s.u32(), 4294967295u);
  EXPECT_EQ(s.u64(), 18446744073709551615ULL);
  EXPECT_EQ(s.si32(), -5);
  EXPECT_EQ(s.si64(), -6000000000LL);
  EXPECT_EQ(s.fx32(), 7u);
  EXPECT_EQ(s.fx64(), 8u);
  EXPECT_EQ(s.sfx32(), -9);
  EXPECT_EQ(s.sfx64(), -10);
  EXPECT_TRUE(s.flag());
  EXPECT_DOUBLE_EQ(s.dbl(), 1500.0);
  EXPECT_FLOAT_EQ(s.flt(), -0.25f);
  EXPECT_EQ(s.raw(), "ab\\x01");  // bytes are the literal string, not base64 or escapes
}

TEST(YamlProtoTest, StringsKeepTheirTextAndBoolIsCaseInsensitive) {
  Config c = MustParse("name: 0014\nscalars: {s: 'true', flag: False, dbl: .inf}\n");
  EXPECT_EQ(c.name(), "0014");  // not turned into a number
  EXPECT_EQ(c.scalars().s(), "true");
  EXPECT_FALSE(c.scalars().flag());
  EXPECT_TRUE(std::isinf(c.scalars().dbl()));
  c = MustParse("scalars: {flag: true, dbl: -3, flt: 2}\n");
  EXPECT_TRUE(c.scalars().flag());
  EXPECT_DOUBLE_EQ(c.scalars().dbl(), -3.0);
  EXPECT_FLOAT_EQ(c.scalars().flt(), 2.0f);
}

TEST(YamlProtoTest, ProtoOptionalScalarIsPresentEvenWhenZero) {
  const Config c = MustParse("maybe: 0\n");
  EXPECT_TRUE(c.has_maybe());
  EXPECT_EQ(c.maybe(), 0);
}

TEST(YamlProtoTest, IntegerErrors) {
  EXPECT_EQ(ErrorOf("scalars:\n  i32: 1.5\n"),
            "cfg.yaml:2:8: scalars.i32: invalid int32 value \"1.5\": expected a decimal integer");
  EXPECT_EQ(ErrorOf("scalars:\n  i32: 2147483648\n"),
            "cfg.yaml:2:8: scalars.i32: value \"2147483648\" is out of range for int32");
  EXPECT_EQ(ErrorOf("scalars:\n  i64: 9223372036854775808\n"),
            "cfg.yaml:2:8: scalars.i64: value \"9223372036854775808\" is out of range for int64");
  EXPECT_EQ(ErrorOf("scalars:\n  u32: 4294967296\n"),
            "cfg.yaml:2:8: scalars.u32: value \"4294967296\" is out of range for uint32");
  EXPECT_EQ(ErrorOf("scalars:\n  u64: -1\n"),
            "cfg.yaml:2:8: scalars.u64: value \"-1\" is out of range for uint64");
  EXPECT_EQ(ErrorOf("scalars:\n  u64: 18446744073709551616\n"),
            "cfg.yaml:2:8: scalars.u64: value \"18446744073709551616\" is out of range for uint64");
  EXPECT_EQ(ErrorOf("scalars:\n  si32: twelve\n"),
            "cfg.yaml:2:9: scalars.si32: invalid sint32 value \"twelve\": expected a decimal "
            "integer");
  EXPECT_EQ(ErrorOf("scalars:\n  fx32: 0x10\n"),
            "cfg.yaml:2:9: scalars.fx32: invalid fixed32 value \"0x10\": expected a decimal "
            "integer");
  EXPECT_EQ(ErrorOf("numbers: [1, 2, 1e3]\n"),
            "cfg.yaml:1:17: numbers[2]: invalid int64 value \"1e3\": expected a decimal integer");
}

TEST(YamlProtoTest, BoolAndFloatErrors) {
  EXPECT_EQ(ErrorOf("scalars:\n  flag: yes\n"),
            "cfg.yaml:2:9: scalars.flag: invalid bool value \"yes\": expected true or false");
  EXPECT_EQ(ErrorOf("scalars:\n  dbl: 1,5\n"),
            "cfg.yaml:2:8: scalars.dbl: invalid double value \"1,5\": expected a number");
  EXPECT_EQ(ErrorOf("scalars:\n  dbl: 1e999\n"),
            "cfg.yaml:2:8: scalars.dbl: value \"1e999\" is out of range for double");
  EXPECT_EQ(ErrorOf("scalars:\n  flt: 1e39\n"),
            "cfg.yaml:2:8: scalars.flt: value \"1e39\" is out of range for float");
}

// ---------------------------------------------------------------------------------------
// Node kinds

TEST(YamlProtoTest, WrongNodeKind) {
  EXPECT_EQ(ErrorOf("name:\n  first: a\n"),
            "cfg.yaml:2:3: name: expected a scalar (string), got a mapping");
  EXPECT_EQ(ErrorOf("name: [a]\n"), "cfg.yaml:1:7: name: expected a scalar (string), got a sequence");
  EXPECT_EQ(ErrorOf("name:\n"), "cfg.yaml:1:1: name: expected a scalar (string), got null");
  EXPECT_EQ(ErrorOf("endpoint: localhost\n"),
            "cfg.yaml:1:11: endpoint: expected a mapping (message "
            "knooppunt.testing.yamlproto.Endpoint), got a scalar");
  EXPECT_EQ(ErrorOf("tags: gemeenten\n"),
            "cfg.yaml:1:7: tags: expected a sequence (repeated string), got a scalar");
  EXPECT_EQ(ErrorOf("tags:\n  a: b\n"),
            "cfg.yaml:2:3: tags: expected a sequence (repeated string), got a mapping");
  EXPECT_EQ(ErrorOf("labels: [a]\n"),
            "cfg.yaml:1:9: labels: expected a mapping (map<string, string>), got a sequence");
  EXPECT_EQ(ErrorOf("tags: [a, [b]]\n"),
            "cfg.yaml:1:11: tags[1]: expected a scalar (string), got a sequence");
  EXPECT_EQ(ErrorOf("ttl: {seconds: 5}\n"),
            "cfg.yaml:1:6: ttl: expected a scalar (google.protobuf.Duration), got a mapping");
  EXPECT_EQ(ErrorOf("? [a, b]\n: c\n"),
            "cfg.yaml:1:3: keys must be field names, got a sequence as key");
}

TEST(YamlProtoTest, RootMustBeAMapping) {
  EXPECT_EQ(ErrorOf("- a\n- b\n"),
            "cfg.yaml:1:1: expected a mapping (message knooppunt.testing.yamlproto.Config) at the "
            "top level, got a sequence");
  EXPECT_EQ(ErrorOf("# comment\nhello\n"),
            "cfg.yaml:2:1: expected a mapping (message knooppunt.testing.yamlproto.Config) at the "
            "top level, got a scalar");
}

TEST(YamlProtoTest, EmptyDocumentGivesEmptyMessage) {
  for (const char* yaml : {"", "\n\n", "# only a comment\n", "---\n", "~\n"}) {
    Config config;
    config.set_name("stale");
    absl::StatusOr<SourceMap> map = ParseYamlToProto(yaml, kFile, &config);
    ASSERT_TRUE(map.ok()) << yaml << ": " << map.status();
    EXPECT_EQ(config.ByteSizeLong(), 0u) << yaml;
    EXPECT_EQ(map->file(), kFile);
  }
}

TEST(YamlProtoTest, MoreThanOneDocumentIsAnError) {
  EXPECT_EQ(ErrorOf("name: a\n---\nname: b\n"),
            "cfg.yaml:3:1: expected a single YAML document, found 2");
}

// yaml-cpp 0.7 loops forever (allocating) on these; found by tests/fuzz/policy_fuzz.
TEST(YamlProtoTest, DocumentStartingWithAStrayTokenIsAnErrorNotAHang) {
  EXPECT_EQ(ErrorOf(","), "cfg.yaml:1:1: invalid YAML: unexpected token at the start of a document");
  EXPECT_EQ(ErrorOf("# registry\n, name: a\n"),
            "cfg.yaml:2:1: invalid YAML: unexpected token at the start of a document");
}

TEST(YamlProtoTest, NullMessageValueGivesEmptyMessage) {
  const Config c = MustParse("endpoint:\ntree: ~\nscalars: {}\ntags:\nlabels:\n");
  EXPECT_TRUE(c.has_endpoint());
  EXPECT_TRUE(c.has_tree());
  EXPECT_TRUE(c.has_scalars());
  EXPECT_EQ(c.endpoint().ByteSizeLong(), 0u);
  EXPECT_TRUE(c.tags().empty());
  EXPECT_TRUE(c.labels().empty());
}

// ---------------------------------------------------------------------------------------
// Messages, lists, maps

TEST(YamlProtoTest, NestedAndRepeated) {
  const Config c = MustParse(
      "name: knooppunt\n"
      "tags: [a, \"b c\"]\n"
      "numbers:\n"
      "  - 1\n"
      "  - -2\n"
      "organisations:\n"
      "  - name: Gemeente Groningen\n"
      "    endpoint:\n"
      "      address: groningen.example:443\n"
      "      port: 443\n"
      "    groups: [gemeenten, noord]\n"
      "  - name: RvIG\n"
      "tree:\n"
      "  name: root\n"
      "  children:\n"
      "    - name: a\n"
      "      children: [{name: a1}, {name: a2}]\n"
      "    - name: b\n");
  EXPECT_EQ(c.name(), "knooppunt");
  ASSERT_EQ(c.tags_size(), 2);
  EXPECT_EQ(c.tags(1), "b c");
  ASSERT_EQ(c.numbers_size(), 2);
  EXPECT_EQ(c.numbers(1), -2);
  ASSERT_EQ(c.organisations_size(), 2);
  EXPECT_EQ(c.organisations(0).endpoint().address(), "groningen.example:443");
  EXPECT_EQ(c.organisations(0).endpoint().port(), 443u);
  ASSERT_EQ(c.organisations(0).groups_size(), 2);
  EXPECT_EQ(c.organisations(0).groups(1), "noord");
  EXPECT_EQ(c.organisations(1).name(), "RvIG");
  EXPECT_FALSE(c.organisations(1).has_endpoint());
  ASSERT_EQ(c.tree().children_size(), 2);
  ASSERT_EQ(c.tree().children(0).children_size(), 2);
  EXPECT_EQ(c.tree().children(0).children(1).name(), "a2");
  EXPECT_EQ(c.tree().children(1).name(), "b");
}

TEST(YamlProtoTest, Maps) {
  const Config c = MustParse(
      "labels:\n"
      "  team: platform\n"
      "  \"a.b\": c\n"
      "by_port:\n"
      "  443: {address: a}\n"
      "  \"8443\":\n"
      "    address: b\n"
      "  80:\n"
      "switches: {true: 1, FALSE: -1}\n");
  ASSERT_EQ(c.labels_size(), 2);
  EXPECT_EQ(c.labels().at("team"), "platform");
  EXPECT_EQ(c.labels().at("a.b"), "c");
  ASSERT_EQ(c.by_port_size(), 3);
  EXPECT_EQ(c.by_port().at(443).address(), "a");
  EXPECT_EQ(c.by_port().at(8443).address(), "b");
  EXPECT_EQ(c.by_port().at(80).address(), "");
  ASSERT_EQ(c.switches_size(), 2);
  EXPECT_EQ(c.switches().at(true), 1);
  EXPECT_EQ(c.switches().at(false), -1);
}

TEST(YamlProtoTest, MapErrors) {
  EXPECT_EQ(ErrorOf("by_port:\n  https: {address: a}\n"),
            "cfg.yaml:2:3: by_port[\"https\"]: invalid map key: invalid uint32 value \"https\": "
            "expected a decimal integer");
  EXPECT_EQ(ErrorOf("by_port:\n  443: {}\n  +443: {}\n"),
            "cfg.yaml:3:3: by_port[\"+443\"]: duplicate key \"+443\" (first given at line 2, "
            "column 3)");
  EXPECT_EQ(ErrorOf("labels:\n  a: x\n  a: y\n"),
            "cfg.yaml:3:3: labels[\"a\"]: duplicate key \"a\" (first given at line 2, column 3)");
  EXPECT_EQ(ErrorOf("labels:\n  a: [x]\n"),
            "cfg.yaml:2:6: labels[\"a\"]: expected a scalar (string), got a sequence");
  EXPECT_EQ(ErrorOf("by_port:\n  443: {adres: x}\n"),
            "cfg.yaml:2:9: by_port[\"443\"].adres: unknown key \"adres\" in "
            "knooppunt.testing.yamlproto.Endpoint; allowed keys: address, port");
}

// ---------------------------------------------------------------------------------------
// Enums

TEST(YamlProtoTest, EnumLongAndShortForms) {
  EXPECT_EQ(MustParse("mode: MODE_BEVRAGING\n").mode(), Mode::MODE_BEVRAGING);
  EXPECT_EQ(MustParse("mode: bevraging\n").mode(), Mode::MODE_BEVRAGING);
  EXPECT_EQ(MustParse("mode: Bevraging\n").mode(), Mode::MODE_BEVRAGING);
  EXPECT_EQ(MustParse("mode: levering-push\n").mode(), Mode::MODE_LEVERING_PUSH);
  EXPECT_EQ(MustParse("mode: LEVERING_PUSH\n").mode(), Mode::MODE_LEVERING_PUSH);
  const Config c = MustParse("modes: [bevraging, MODE_LEVERING_PUSH, Levering-Push]\n");
  ASSERT_EQ(c.modes_size(), 3);
  EXPECT_EQ(c.modes(0), Mode::MODE_BEVRAGING);
  EXPECT_EQ(c.modes(1), Mode::MODE_LEVERING_PUSH);
  EXPECT_EQ(c.modes(2), Mode::MODE_LEVERING_PUSH);
}

TEST(YamlProtoTest, EnumUnknownAndUnspecifiedRejected) {
  const std::string tail =
      " for enum knooppunt.testing.yamlproto.Mode; must be one of: bevraging, levering_push";
  EXPECT_EQ(ErrorOf("mode: levering\n"), "cfg.yaml:1:7: mode: invalid value \"levering\"" + tail);
  EXPECT_EQ(ErrorOf("mode: MODE_UNSPECIFIED\n"),
            "cfg.yaml:1:7: mode: invalid value \"MODE_UNSPECIFIED\"" + tail);
  EXPECT_EQ(ErrorOf("mode: unspecified\n"),
            "cfg.yaml:1:7: mode: invalid value \"unspecified\"" + tail);
  EXPECT_EQ(ErrorOf("mode: 1\n"), "cfg.yaml:1:7: mode: invalid value \"1\"" + tail);
  EXPECT_EQ(ErrorOf("modes:\n  - bevraging\n  - push\n"),
            "cfg.yaml:3:5: modes[1]: invalid value \"push\"" + tail);
}

// ---------------------------------------------------------------------------------------
// Well-known types

TEST(YamlProtoTest, Timestamps) {
  // 2026-01-01T00:00:00Z
  constexpr int64_t kNewYear2026 = 1767225600;
  Config c = MustParse(
      "not_before: 2026-01-01T00:00:00Z\n"
      "not_after: 2026-01-01T01:30:00.5+01:30\n");
  EXPECT_EQ(c.not_before().seconds(), kNewYear2026);
  EXPECT_EQ(c.not_before().nanos(), 0);
  EXPECT_EQ(c.not_after().seconds(), kNewYear2026);
  EXPECT_EQ(c.not_after().nanos(), 500000000);

  c = MustParse("not_before: 2026-01-01\nnot_after: '1969-12-31T23:59:59.25-00:00'\n");
  EXPECT_EQ(c.not_before().seconds(), kNewYear2026);
  EXPECT_EQ(c.not_before().nanos(), 0);
  EXPECT_EQ(c.not_after().seconds(), -1);
  EXPECT_EQ(c.not_after().nanos(), 250000000);
}

TEST(YamlProtoTest, TimestampErrors) {
  const std::string tail =
      ": expected RFC 3339 (e.g. 2026-01-01T00:00:00Z or 2026-01-01T09:30:00+01:00) or a date "
      "YYYY-MM-DD";
  EXPECT_EQ(ErrorOf("not_before: 2026-02-30\n"),
            "cfg.yaml:1:13: not_before: invalid timestamp \"2026-02-30\"" + tail);
  EXPECT_EQ(ErrorOf("not_before: 01-01-2026\n"),
            "cfg.yaml:1:13: not_before: invalid timestamp \"01-01-2026\"" + tail);
  EXPECT_EQ(ErrorOf("not_before: 2026-01-01T00:00:00\n"),  // no offset
            "cfg.yaml:1:13: not_before: invalid timestamp \"2026-01-01T00:00:00\"" + tail);
  EXPECT_EQ(ErrorOf("not_before: 0000-01-01\n"),
            "cfg.yaml:1:13: not_before: timestamp \"0000-01-01\" is out of range (years 0001 to "
            "9999 UTC)");
}

TEST(YamlProtoTest, Durations) {
  const Config c = MustParse(
      "ttl: 5d\n"
      "backoff: [1.5s, 300ms, 2h45m, 1d12h, -1.5s, 0]\n");
  EXPECT_EQ(c.ttl().seconds(), 5 * 86400);
  EXPECT_EQ(c.ttl().nanos(), 0);
  ASSERT_EQ(c.backoff_size(), 6);
  EXPECT_EQ(c.backoff(0).seconds(), 1);
  EXPECT_EQ(c.backoff(0).nanos(), 500000000);
  EXPECT_EQ(c.backoff(1).seconds(), 0);
  EXPECT_EQ(c.backoff(1).nanos(), 300000000);
  EXPECT_EQ(c.backoff(2).seconds(), 2 * 3600 + 45 * 60);
  EXPECT_EQ(c.backoff(3).seconds(), 36 * 3600);
  EXPECT_EQ(c.backoff(4).seconds(), -1);
  EXPECT_EQ(c.backoff(4).nanos(), -500000000);
  EXPECT_EQ(c.backoff(5).seconds(), 0);
}

TEST(YamlProtoTest, DurationErrors) {
  const std::string tail = ": expected e.g. 1.5s, 300ms, 2h45m or 5d";
  EXPECT_EQ(ErrorOf("ttl: 5\n"), "cfg.yaml:1:6: ttl: invalid duration \"5\"" + tail);
  EXPECT_EQ(ErrorOf("ttl: 5 days\n"), "cfg.yaml:1:6: ttl: invalid duration \"5 days\"" + tail);
  EXPECT_EQ(ErrorOf("ttl: 1.5d\n"), "cfg.yaml:1:6: ttl: invalid duration \"1.5d\"" + tail);
  EXPECT_EQ(ErrorOf("backoff:\n  - 1s\n  - soon\n"),
            "cfg.yaml:3:5: backoff[1]: invalid duration \"soon\"" + tail);
  EXPECT_EQ(ErrorOf("ttl: inf\n"),
            "cfg.yaml:1:6: ttl: duration \"inf\" is out of range (at most 10000 years)");
}

// ---------------------------------------------------------------------------------------
// Keys

TEST(YamlProtoTest, UnknownKeyNamesKeyTypeAndAllowedKeysAtExactPosition) {
  EXPECT_EQ(ErrorOf("name: x\n"
                    "organisations:\n"
                    "  - name: a\n"
                    "    endpoint:\n"
                    "      address: a:443\n"
                    "      adress: b\n"),
            "cfg.yaml:6:7: organisations[0].endpoint.adress: unknown key \"adress\" in "
            "knooppunt.testing.yamlproto.Endpoint; allowed keys: address, port");
  EXPECT_EQ(ErrorOf("# header\n\nNAME: x\n"),
            "cfg.yaml:3:1: NAME: unknown key \"NAME\" in knooppunt.testing.yamlproto.Config; "
            "allowed keys: name, scalars, endpoint, tags, numbers, organisations, labels, "
            "by_port, switches, mode, modes, not_before, not_after, ttl, backoff, url, direct, "
            "tree, maybe");
}

TEST(YamlProtoTest, DuplicateKey) {
  EXPECT_EQ(ErrorOf("name: a\ntags: []\nname: b\n"),
            "cfg.yaml:3:1: name: duplicate key \"name\" (first given at line 1, column 1)");
  EXPECT_EQ(ErrorOf("endpoint: {address: a, address: b}\n"),
            "cfg.yaml:1:24: endpoint.address: duplicate key \"address\" (first given at line 1, "
            "column 12)");
}

TEST(YamlProtoTest, OneofConflict) {
  EXPECT_EQ(MustParse("direct: {address: a}\n").direct().address(), "a");
  EXPECT_EQ(ErrorOf("url: https://x\ndirect:\n  address: a\n"),
            "cfg.yaml:2:1: direct: \"direct\" conflicts with \"url\": both are in oneof "
            "\"target\"; give only one");
}

// ---------------------------------------------------------------------------------------
// Syntax and hostile input

TEST(YamlProtoTest, SyntaxErrorCarriesLine) {
  EXPECT_EQ(ErrorOf("name: a\nendpoint:\n  address: b\n   port: 3\n"),
            "cfg.yaml:4:8: invalid YAML: illegal map value");
  EXPECT_EQ(ErrorOf("name: a\ntags: [a, b\nmode: x\n"),
            "cfg.yaml:3:5: invalid YAML: end of sequence flow not found");
}

// `levels` nested "child:" mappings under the root, one per line, indented by two.
std::string NestedChildren(int levels, const std::string& leaf) {
  std::string yaml = "tree:\n";
  for (int i = 1; i <= levels; ++i) yaml += std::string(2 * i, ' ') + "child:\n";
  yaml += std::string(2 * (levels + 1), ' ') + leaf + "\n";
  return yaml;
}

TEST(YamlProtoTest, DepthLimit) {
  // Root (level 1) + tree (level 2) + 62 children = 64 levels: accepted.
  Config c = MustParse(NestedChildren(62, "name: leaf"));
  const Tree* t = &c.tree();
  for (int i = 0; i < 62; ++i) t = &t->child();
  EXPECT_EQ(t->name(), "leaf");

  // One more level is rejected, pointing at the mapping on line 65.
  std::vector<std::string> path = {"tree"};
  for (int i = 0; i < 63; ++i) path.push_back("child");
  EXPECT_EQ(ErrorOf(NestedChildren(63, "name: leaf")),
            absl::StrCat("cfg.yaml:65:129: ", absl::StrJoin(path, "."),
                         ": nesting deeper than 64 levels"));

  // 200 levels: an error, not a stack overflow.
  const std::string error = ErrorOf(NestedChildren(200, "name: leaf"));
  EXPECT_THAT(error, StartsWith("cfg.yaml:65:129: tree.child.child"));
  EXPECT_THAT(error, HasSubstr(": nesting deeper than 64 levels"));

  // 200 levels in flow style.
  std::string flow = "tree: ";
  for (int i = 0; i < 200; ++i) flow += "{child: ";
  flow += "{}";
  for (int i = 0; i < 200; ++i) flow += "}";
  EXPECT_THAT(ErrorOf(flow + "\n"), HasSubstr("nesting deeper than 64 levels"));

  // Sequences count as levels too.
  std::string lists = "tree: ";
  for (int i = 0; i < 200; ++i) lists += "{children: [";
  for (int i = 0; i < 200; ++i) lists += "]}";
  EXPECT_THAT(ErrorOf(lists + "\n"), HasSubstr("nesting deeper than 64 levels"));
}

TEST(YamlProtoTest, HostileInputIsAnErrorNotACrash) {
  // Far beyond yaml-cpp's own recursion guard.
  EXPECT_EQ(ErrorOf("tree: " + std::string(10000, '[') + "\n"),
            "cfg.yaml:2:1: invalid YAML: nesting deeper than 64 levels");
  // A self-referencing alias is cut off by the depth limit.
  EXPECT_THAT(ErrorOf("tree: &t\n  child: *t\n"), HasSubstr("nesting deeper than 64 levels"));
  // Exponential alias expansion is cut off by the node budget.
  // The anchors live under `tree.children` so that they are part of the schema.
  std::string yaml = "tree:\n  children:\n";
  for (int i = 0; i <= 30; ++i) {
    yaml += "    - " + (i == 0 ? std::string("&a0 {name: x}")
                              : absl::StrCat("&a", i, " {children: [*a", i - 1, ", *a", i - 1,
                                             "]}")) +
            "\n";
  }
  EXPECT_THAT(ErrorOf(yaml), HasSubstr("document too large"));
}

TEST(YamlProtoTest, AliasesAreResolved) {
  const Config c = MustParse(
      "endpoint: &ep {address: a:1}\n"
      "organisations:\n"
      "  - endpoint: *ep\n");
  EXPECT_EQ(c.organisations(0).endpoint().address(), "a:1");
}

// ---------------------------------------------------------------------------------------
// SourceMap

TEST(YamlProtoTest, SourceMapLocatesElementsAndFallsBackToAncestors) {
  SourceMap map;
  MustParse(
      "# registry\n"
      "name: knooppunt\n"
      "organisations:\n"
      "  - name: Gemeente Groningen\n"
      "    endpoint:\n"
      "      address: groningen.example:443\n"
      "    groups: [gemeenten, noord]\n"
      "  - name: RvIG\n"
      "labels:\n"
      "  \"a.b[c]\": x\n",
      &map);
  EXPECT_EQ(map.file(), "cfg.yaml");
  EXPECT_EQ(map.Locate("").ToString(), "cfg.yaml:2:1");
  EXPECT_EQ(map.Locate("name").ToString(), "cfg.yaml:2:7");
  EXPECT_EQ(map.Locate("organisations").ToString(), "cfg.yaml:3:1");
  EXPECT_EQ(map.Locate("organisations[0]").ToString(), "cfg.yaml:4:5");
  EXPECT_EQ(map.Locate("organisations[0].endpoint").ToString(), "cfg.yaml:5:5");
  EXPECT_EQ(map.Locate("organisations[0].endpoint.address").ToString(), "cfg.yaml:6:16");
  EXPECT_EQ(map.Locate("organisations[0].groups[1]").ToString(), "cfg.yaml:7:25");
  EXPECT_EQ(map.Locate("organisations[1]").ToString(), "cfg.yaml:8:5");
  EXPECT_EQ(map.Locate(JoinKeyPath("labels", "a.b[c]")).ToString(), "cfg.yaml:10:13");
  EXPECT_TRUE(map.Contains("organisations[1].name"));

  // Not recorded: the nearest recorded ancestor.
  EXPECT_FALSE(map.Contains("organisations[1].endpoint.address"));
  EXPECT_EQ(map.Locate("organisations[1].endpoint.address").ToString(), "cfg.yaml:8:5");
  EXPECT_EQ(map.Locate("organisations[0].groups[7]").ToString(), "cfg.yaml:7:5");
  EXPECT_EQ(map.Locate(JoinKeyPath("labels", "a.b[c]") + ".x").ToString(), "cfg.yaml:10:13");
  EXPECT_EQ(map.Locate("endpoint.address").ToString(), "cfg.yaml:2:1");  // root

  const absl::Status error = map.Error("organisations[1].endpoint", "required for registers");
  EXPECT_EQ(error.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(error.message(), "cfg.yaml:8:5: organisations[1].endpoint: required for registers");
  EXPECT_EQ(map.Error("", "empty registry").message(), "cfg.yaml:2:1: empty registry");
}

TEST(YamlProtoTest, SourceMapWithoutRecordsFallsBackToLineOne) {
  SourceMap map("x.yaml");
  EXPECT_EQ(map.Locate("a.b[1]").ToString(), "x.yaml:1:1");
  map.Record("a", SourceLocation{"x.yaml", 4, 2});
  EXPECT_EQ(map.Locate("a.b[1]").ToString(), "x.yaml:4:2");
  EXPECT_EQ(map.Locate("ab").ToString(), "x.yaml:1:1");
}

TEST(YamlProtoTest, PathHelpers) {
  EXPECT_EQ(JoinFieldPath("", "a"), "a");
  EXPECT_EQ(JoinFieldPath("a[2]", "from"), "a[2].from");
  EXPECT_EQ(JoinIndexPath("agreements", 2), "agreements[2]");
  EXPECT_EQ(JoinKeyPath("labels", "x"), "labels[\"x\"]");
  EXPECT_EQ(JoinKeyPath("labels", "a\"b\\c\n"), "labels[\"a\\\"b\\\\c\\n\"]");
}

// ---------------------------------------------------------------------------------------
// LoadYamlFile

TEST(YamlProtoTest, LoadYamlFile) {
  const std::string path = ::testing::TempDir() + "yaml_proto_test_load.yaml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "name: from-file\nendpoint:\n  port: http\n";
  }
  Config config;
  absl::StatusOr<SourceMap> map = LoadYamlFile(path, &config);
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().message(),
            path + ":3:9: endpoint.port: invalid uint32 value \"http\": expected a decimal "
                   "integer");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "name: from-file\n";
  }
  map = LoadYamlFile(path, &config);
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_EQ(config.name(), "from-file");
  EXPECT_EQ(map->Locate("name").ToString(), path + ":1:7");
  std::remove(path.c_str());
}

TEST(YamlProtoTest, LoadYamlFileMissingOrUnreadable) {
  Config config;
  const std::string missing = ::testing::TempDir() + "yaml_proto_test_does_not_exist.yaml";
  absl::StatusOr<SourceMap> map = LoadYamlFile(missing, &config);
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(map.status().message(), HasSubstr(missing));

  map = LoadYamlFile(::testing::TempDir(), &config);  // a directory
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(map.status().message(), HasSubstr(::testing::TempDir()));
}

}  // namespace
}  // namespace knooppunt::config
