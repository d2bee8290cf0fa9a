#include "gateway/transform/field_filter.h"

#include <string>
#include <vector>

#include "gemeente/brp/v1/brp.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "gtest/gtest.h"
#include "transform_test.pb.h"

namespace knooppunt::transform {
namespace {

using gemeente::brp::v1::Persoon;
using gemeente::brp::v1::PersoonVraag;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr char kInvalidBsn[] = "123456789";  // fails the 11-proef

Persoon TypicalPersoon() {
  Persoon p;
  p.set_bsn("999993653");
  p.set_a_nummer("1234567890");
  p.mutable_naam()->set_voornamen("Anna Maria");
  p.mutable_naam()->set_voorvoegsel("van der");
  p.mutable_naam()->set_geslachtsnaam("Berg");
  p.mutable_geboorte()->set_plaats("Amsterdam");
  p.mutable_geboorte()->mutable_datum()->set_jaar(1987);
  p.set_geslacht("V");
  p.add_nationaliteiten()->set_code("0001");
  p.mutable_verblijfplaats()->mutable_adres()->set_woonplaats("Groningen");
  p.mutable_verblijfplaats()->mutable_adres()->set_postcode("9711LV");
  p.mutable_verblijfplaats()->set_functie_adres("W");
  for (const char* bsn : {"999990019", "999990020"}) {
    auto* ouder = p.add_ouders();
    ouder->set_bsn(bsn);
    ouder->mutable_naam()->set_geslachtsnaam("Berg");
    ouder->set_ouder_aanduiding("1");
  }
  p.add_partners()->set_bsn("999990032");
  (*p.mutable_indicaties())["geheimhouding"] = "0";
  return p;
}

FieldPlan MustCompile(const google::protobuf::Descriptor* type, std::vector<std::string> allow,
                      bool all = false) {
  config::v1::FieldPolicy policy;
  policy.set_all(all);
  for (const std::string& a : allow) policy.add_allow(a);
  absl::StatusOr<FieldPlan> plan = FieldPlan::Compile(
      type, policy, [](int i, absl::string_view m) {
        return absl::InvalidArgumentError(absl::StrCat("allow[", i, "]: ", m));
      });
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *std::move(plan) : FieldPlan();
}

absl::Status CompileError(const google::protobuf::Descriptor* type, std::vector<std::string> allow,
                          bool all = false) {
  config::v1::FieldPolicy policy;
  policy.set_all(all);
  for (const std::string& a : allow) policy.add_allow(a);
  return FieldPlan::Compile(type, policy, [](int i, absl::string_view m) {
           return absl::InvalidArgumentError(absl::StrCat("allow[", i, "]: ", m));
         }).status();
}

template <typename M>
M Filter(const FieldPlan& plan, const M& in, std::vector<std::string>* removed) {
  std::string bytes = in.SerializeAsString();
  absl::Status s = Apply(plan, /*check_bsn=*/true, &bytes, removed);
  EXPECT_TRUE(s.ok()) << s;
  M out;
  EXPECT_TRUE(out.ParseFromString(bytes));
  return out;
}

// Appends an unknown varint field to serialised bytes.
std::string WithUnknownField(std::string bytes, int number) {
  std::string extra;
  {
    google::protobuf::io::StringOutputStream raw(&extra);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.WriteTag(static_cast<uint32_t>(number) << 3);  // wire type 0: varint
    out.WriteVarint64(42);
  }
  return bytes + extra;
}

TEST(FieldFilterTest, TopLevelListKeepsOnlyListedFields) {
  const FieldPlan plan =
      MustCompile(Persoon::descriptor(), {"bsn", "naam", "geboorte", "verblijfplaats"});
  std::vector<std::string> removed;
  const Persoon out = Filter(plan, TypicalPersoon(), &removed);
  EXPECT_EQ(out.bsn(), "999993653");
  EXPECT_EQ(out.naam().voorvoegsel(), "van der");  // a listed message passes whole
  EXPECT_EQ(out.verblijfplaats().adres().postcode(), "9711LV");
  EXPECT_TRUE(out.a_nummer().empty());
  EXPECT_EQ(out.ouders_size(), 0);
  EXPECT_EQ(out.partners_size(), 0);
  EXPECT_EQ(out.nationaliteiten_size(), 0);
  EXPECT_TRUE(out.indicaties().empty());
  EXPECT_THAT(removed, UnorderedElementsAre("a_nummer", "geslacht", "nationaliteiten", "ouders",
                                            "partners", "indicaties"));
}

TEST(FieldFilterTest, NestedPathKeepsOnlyThatLeaf) {
  const FieldPlan plan =
      MustCompile(Persoon::descriptor(), {"naam.voornamen", "verblijfplaats.adres.woonplaats"});
  std::vector<std::string> removed;
  const Persoon out = Filter(plan, TypicalPersoon(), &removed);
  EXPECT_EQ(out.naam().voornamen(), "Anna Maria");
  EXPECT_TRUE(out.naam().geslachtsnaam().empty());
  EXPECT_TRUE(out.naam().voorvoegsel().empty());
  EXPECT_EQ(out.verblijfplaats().adres().woonplaats(), "Groningen");
  EXPECT_TRUE(out.verblijfplaats().adres().postcode().empty());
  EXPECT_TRUE(out.verblijfplaats().functie_adres().empty());
  EXPECT_TRUE(out.bsn().empty());
  EXPECT_THAT(removed, ::testing::IsSupersetOf({"naam.voorvoegsel", "naam.geslachtsnaam",
                                                "verblijfplaats.adres.postcode",
                                                "verblijfplaats.functie_adres", "bsn"}));
}

TEST(FieldFilterTest, PathThroughRepeatedMessageAppliesToEveryElement) {
  const FieldPlan plan = MustCompile(Persoon::descriptor(), {"bsn", "ouders.bsn"});
  std::vector<std::string> removed;
  const Persoon out = Filter(plan, TypicalPersoon(), &removed);
  ASSERT_EQ(out.ouders_size(), 2);
  EXPECT_EQ(out.ouders(0).bsn(), "999990019");
  EXPECT_EQ(out.ouders(1).bsn(), "999990020");
  EXPECT_FALSE(out.ouders(0).has_naam());
  EXPECT_TRUE(out.ouders(1).ouder_aanduiding().empty());
  // Each removed path once, without list indexes and without values.
  EXPECT_EQ(std::count(removed.begin(), removed.end(), "ouders.naam"), 1);
  EXPECT_EQ(std::count(removed.begin(), removed.end(), "ouders.ouder_aanduiding"), 1);
  for (const std::string& path : removed) {
    EXPECT_THAT(path, Not(HasSubstr("Berg")));
    EXPECT_THAT(path, Not(HasSubstr("999")));
  }
}

TEST(FieldFilterTest, MapsPassWholeOrIntoTheirMessageValues) {
  test::Dossier d;
  d.set_id("D-1");
  d.set_notitie("vertrouwelijk");
  (*d.mutable_labels())["a"] = "b";
  test::Item& item = (*d.mutable_items())["x"];
  item.set_code("C1");
  item.set_omschrijving("geheim");
  item.set_bsn("999993653");

  std::vector<std::string> removed;
  test::Dossier whole = Filter(MustCompile(test::Dossier::descriptor(), {"id", "labels", "items"}),
                               d, &removed);
  EXPECT_EQ(whole.labels().at("a"), "b");
  EXPECT_EQ(whole.items().at("x").omschrijving(), "geheim");
  EXPECT_THAT(removed, UnorderedElementsAre("notitie"));

  removed.clear();
  test::Dossier part =
      Filter(MustCompile(test::Dossier::descriptor(), {"items.code"}), d, &removed);
  ASSERT_EQ(part.items().count("x"), 1u);  // the key always passes
  EXPECT_EQ(part.items().at("x").code(), "C1");
  EXPECT_TRUE(part.items().at("x").omschrijving().empty());
  EXPECT_TRUE(part.items().at("x").bsn().empty());
  EXPECT_TRUE(part.labels().empty());
  EXPECT_THAT(removed, UnorderedElementsAre("id", "notitie", "labels", "items.omschrijving",
                                            "items.bsn"));
}

// The same payload is always filtered into the same bytes, maps included (their entries in
// key order; plain serialisation follows hash order, which differs from parse to parse).
TEST(FieldFilterTest, FilteredBytesAreTheSameEveryTimeWithMaps) {
  test::Dossier d;
  d.set_id("D-1");
  d.set_notitie("vertrouwelijk");
  for (int i = 0; i < 32; ++i) {
    (*d.mutable_labels())[absl::StrCat("k", i)] = absl::StrCat("v", i);
    (*d.mutable_items())[absl::StrCat("x", i)].set_code(absl::StrCat("C", i));
  }
  const std::string payload = d.SerializeAsString();
  const FieldPlan plan = MustCompile(test::Dossier::descriptor(), {"id", "labels", "items.code"});
  std::string first;
  std::vector<std::string> removed;
  ASSERT_TRUE(Filter(plan, true, payload, &first, &removed).value_or(false));
  for (int round = 0; round < 20; ++round) {
    std::string again;
    removed.clear();
    ASSERT_TRUE(Filter(plan, true, payload, &again, &removed).value_or(false));
    ASSERT_EQ(again, first) << "round " << round;
  }
}

TEST(FieldFilterTest, RecursiveTypesFilterAtEveryLevel) {
  test::Dossier d;
  d.set_id("D-2");
  d.set_notitie("n");
  d.mutable_vorig()->set_id("D-1");
  d.mutable_vorig()->set_notitie("n");
  d.mutable_vorig()->mutable_vorig()->set_id("D-0");
  std::vector<std::string> removed;
  test::Dossier out =
      Filter(MustCompile(test::Dossier::descriptor(), {"id", "vorig.id", "vorig.vorig"}), d,
             &removed);
  EXPECT_EQ(out.vorig().id(), "D-1");
  EXPECT_TRUE(out.vorig().notitie().empty());
  EXPECT_EQ(out.vorig().vorig().id(), "D-0");
  EXPECT_THAT(removed, UnorderedElementsAre("notitie", "vorig.notitie"));
}

TEST(FieldFilterTest, UnknownFieldsAreRemovedAtAnyDepthAndNamedByNumber) {
  const FieldPlan plan = MustCompile(Persoon::descriptor(), {"bsn", "naam"});
  Persoon p;
  p.set_bsn("999993653");
  gemeente::common::v1::Naam naam;
  naam.set_geslachtsnaam("Berg");
  // naam with an unknown field 9 inside, and an unknown field 99 at the top.
  std::string naam_bytes = WithUnknownField(naam.SerializeAsString(), 9);
  std::string bytes = p.SerializeAsString();
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    out.WriteTag((3u << 3) | 2u);  // field 3 (naam), length-delimited
    out.WriteVarint32(static_cast<uint32_t>(naam_bytes.size()));
    out.WriteString(naam_bytes);
  }
  bytes = WithUnknownField(bytes, 99);

  std::vector<std::string> removed;
  ASSERT_TRUE(Apply(plan, true, &bytes, &removed).ok());
  Persoon out;
  ASSERT_TRUE(out.ParseFromString(bytes));
  EXPECT_EQ(out.naam().geslachtsnaam(), "Berg");
  EXPECT_TRUE(out.GetReflection()->GetUnknownFields(out).empty());
  EXPECT_TRUE(out.naam().GetReflection()->GetUnknownFields(out.naam()).empty());
  EXPECT_THAT(removed, UnorderedElementsAre("[unknown 99]", "naam.[unknown 9]"));
}

TEST(FieldFilterTest, AllFieldsPassWithoutParsing) {
  // Not a protobuf at all: with all fields passing and no BSN to check it is never parsed.
  const FieldPlan plan = MustCompile(gemeente::common::v1::Naam::descriptor(), {}, /*all=*/true);
  EXPECT_FALSE(NeedsParse(plan, /*check_bsn=*/true));
  std::string bytes = "\xff\xff\xff not a protobuf";
  const std::string before = bytes;
  std::vector<std::string> removed;
  EXPECT_TRUE(Apply(plan, true, &bytes, &removed).ok());
  EXPECT_EQ(bytes, before);
  EXPECT_THAT(removed, IsEmpty());

  // A type with BSN fields is parsed to check them only when asked (requests), and its bytes
  // still pass as they came, unknown fields included.
  const FieldPlan persoon = MustCompile(Persoon::descriptor(), {}, /*all=*/true);
  EXPECT_FALSE(NeedsParse(persoon, /*check_bsn=*/false));
  EXPECT_TRUE(NeedsParse(persoon, /*check_bsn=*/true));
  std::string persoon_bytes = WithUnknownField(TypicalPersoon().SerializeAsString(), 99);
  const std::string persoon_before = persoon_bytes;
  EXPECT_TRUE(Apply(persoon, true, &persoon_bytes, &removed).ok());
  EXPECT_EQ(persoon_bytes, persoon_before);
  EXPECT_EQ(persoon.AllowedPaths(), std::vector<std::string>{"*"});
}

TEST(FieldFilterTest, PayloadThatDoesNotParseIsInvalidArgument) {
  const FieldPlan plan = MustCompile(Persoon::descriptor(), {"bsn"});
  std::string bytes = "\x0a\x50short";  // field 1, length 80, but 5 bytes follow
  std::vector<std::string> removed;
  absl::Status s = Apply(plan, true, &bytes, &removed);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("gemeente.brp.v1.Persoon"));
  EXPECT_EQ(bytes, "\x0a\x50short");
}

TEST(FieldFilterTest, BadBsnIsNamedByPathNeverByValue) {
  const FieldPlan vraag = MustCompile(PersoonVraag::descriptor(), {}, /*all=*/true);
  PersoonVraag q;
  q.set_bsn(kInvalidBsn);
  std::string bytes = q.SerializeAsString();
  std::vector<std::string> removed;
  absl::Status s = Apply(vraag, /*check_bsn=*/true, &bytes, &removed);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("field bsn "));
  EXPECT_THAT(s.message(), HasSubstr("11-proef"));
  EXPECT_THAT(s.message(), Not(HasSubstr(kInvalidBsn)));

  // Nested in a repeated message, with its index; checked even where the field is removed.
  Persoon p = TypicalPersoon();
  p.mutable_ouders(1)->set_bsn("999990021");
  bytes = p.SerializeAsString();
  s = Apply(MustCompile(Persoon::descriptor(), {"naam"}), true, &bytes, &removed);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("field ouders[1].bsn "));
  EXPECT_THAT(s.message(), Not(HasSubstr("999990021")));

  // Repeated BSN fields, and BSNs inside map values.
  test::Dossier d;
  d.add_betrokkenen("999993653");
  d.add_betrokkenen(kInvalidBsn);
  bytes = d.SerializeAsString();
  s = Apply(MustCompile(test::Dossier::descriptor(), {}, true), true, &bytes, &removed);
  EXPECT_THAT(s.message(), HasSubstr("field betrokkenen[1] "));
  test::Dossier m;
  (*m.mutable_items())["k"].set_bsn(kInvalidBsn);
  bytes = m.SerializeAsString();
  s = Apply(MustCompile(test::Dossier::descriptor(), {"id"}), true, &bytes, &removed);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("items[0].value.bsn"));

  // Valid BSNs and an empty BSN pass; replies (check_bsn false) are not checked.
  PersoonVraag empty;
  bytes = empty.SerializeAsString();
  EXPECT_TRUE(Apply(vraag, true, &bytes, &removed).ok());
  bytes = q.SerializeAsString();
  EXPECT_TRUE(Apply(MustCompile(PersoonVraag::descriptor(), {"bsn"}), false, &bytes, &removed).ok());
}

TEST(FieldFilterTest, CompileRejectsPathsTheTypeDoesNotHave) {
  const auto* persoon = Persoon::descriptor();
  EXPECT_THAT(CompileError(persoon, {"bsn", "naam.roepnaam"}).message(),
              HasSubstr("allow[1]: field path 'naam.roepnaam': gemeente.common.v1.Naam has no "
                        "field 'roepnaam'"));
  EXPECT_THAT(CompileError(persoon, {"ouders.bsn.x"}).message(),
              HasSubstr("allow[0]: field path 'ouders.bsn.x': 'bsn' is not a message"));
  EXPECT_THAT(CompileError(persoon, {"indicaties.value"}).message(),
              HasSubstr("the values of map 'indicaties' are not messages"));
  EXPECT_THAT(CompileError(persoon, {""}).message(), HasSubstr("allow[0]"));
  EXPECT_THAT(CompileError(persoon, {}).message(), HasSubstr("allow[-1]: name the fields"));
  EXPECT_THAT(CompileError(persoon, {"bsn"}, true).message(), HasSubstr("not both"));
}

TEST(FieldFilterTest, AllowedPathsAreNormalised) {
  const FieldPlan plan =
      MustCompile(Persoon::descriptor(), {"naam.voornamen", "naam", "ouders.bsn", "bsn"});
  EXPECT_EQ(plan.AllowedPaths(), (std::vector<std::string>{"bsn", "naam", "ouders.bsn"}));
  EXPECT_TRUE(HasBsnFields(Persoon::descriptor()));
  EXPECT_FALSE(HasBsnFields(gemeente::common::v1::Naam::descriptor()));
  EXPECT_TRUE(HasBsnFields(test::Dossier::descriptor()));
}

}  // namespace
}  // namespace knooppunt::transform
