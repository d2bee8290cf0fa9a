// knooppunt-bench-filter: what the transform step costs per payload, on the demo's typical
// BRP person record (tools/demo/brp-register.textproto) and the demo agreement's reply field
// list. Target: filtering with a field list <= 20 us per record; "all fields" does not parse.
//
//   knooppunt-bench-filter [--register=PATH] [Google Benchmark flags]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "benchmark/benchmark.h"
#include "gateway/transform/field_filter.h"
#include "google/protobuf/text_format.h"
#include "tools/demo/demo_fixture.pb.h"

namespace {

std::string g_register_path = KNOOPPUNT_DEMO_REGISTER;

std::string TypicalPerson() {
  std::ifstream in(g_register_path);
  std::stringstream text;
  text << in.rdbuf();
  knooppunt::demo::BrpRegister reg;
  if (!google::protobuf::TextFormat::ParseFromString(text.str(), &reg) || reg.personen().empty()) {
    std::fprintf(stderr, "cannot read a person from %s\n", g_register_path.c_str());
    std::exit(2);
  }
  return reg.personen(0).SerializeAsString();
}

knooppunt::transform::FieldPlan Plan(std::initializer_list<const char*> allow, bool all) {
  knooppunt::config::v1::FieldPolicy policy;
  policy.set_all(all);
  for (const char* path : allow) policy.add_allow(path);
  auto plan = knooppunt::transform::FieldPlan::Compile(
      gemeente::brp::v1::Persoon::descriptor(), policy,
      [](int, absl::string_view message) { return absl::InvalidArgumentError(message); });
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", std::string(plan.status().message()).c_str());
    std::exit(2);
  }
  return *std::move(plan);
}

void Run(benchmark::State& state, const knooppunt::transform::FieldPlan& plan) {
  const std::string person = TypicalPerson();
  std::vector<std::string> removed;
  for (auto _ : state) {
    std::string payload = person;
    removed.clear();
    absl::Status s = knooppunt::transform::Apply(plan, /*check_bsn=*/false, &payload, &removed);
    if (!s.ok()) state.SkipWithError("filter failed");
    benchmark::DoNotOptimize(payload);
  }
  state.counters["record_bytes"] = static_cast<double>(person.size());
  state.SetLabel("target <= 20 us/record; CPU column = cost, Time = wall clock");
}

// The demo agreement's reply field list (policies/agreements/brp-bevragen.yaml).
void BM_FilterAgreedFields(benchmark::State& state) {
  static const auto plan =
      Plan({"bsn", "naam", "geboorte", "verblijfplaats", "gemeente_van_inschrijving"}, false);
  Run(state, plan);
}
BENCHMARK(BM_FilterAgreedFields);

// Paths into repeated and nested messages.
void BM_FilterNestedPaths(benchmark::State& state) {
  static const auto plan = Plan({"bsn", "naam.geslachtsnaam", "ouders.bsn",
                                 "verblijfplaats.adres.postcode", "indicaties"},
                                false);
  Run(state, plan);
}
BENCHMARK(BM_FilterNestedPaths);

// An agreement that lets all fields pass: the bytes are forwarded, never parsed.
void BM_AllFieldsPass(benchmark::State& state) {
  static const auto plan = Plan({}, true);
  Run(state, plan);
}
BENCHMARK(BM_AllFieldsPass);

// Validation only: all fields pass, but the BSN fields are checked (request direction).
void BM_AllFieldsWithBsnCheck(benchmark::State& state) {
  static const auto plan = Plan({}, true);
  const std::string person = TypicalPerson();
  std::vector<std::string> removed;
  for (auto _ : state) {
    std::string payload = person;
    absl::Status s = knooppunt::transform::Apply(plan, /*check_bsn=*/true, &payload, &removed);
    if (!s.ok()) state.SkipWithError("check failed");
    benchmark::DoNotOptimize(payload);
  }
}
BENCHMARK(BM_AllFieldsWithBsnCheck);

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--register=", 11) == 0) g_register_path = argv[i] + 11;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
