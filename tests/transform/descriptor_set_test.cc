// New message types from descriptor set files (no recompiling), filtered and BSN-checked as
// dynamic messages.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gateway/server/message_types.h"
#include "gateway/transform/field_filter.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "gtest/gtest.h"
#include "knooppunt/options/v1/options.pb.h"

namespace knooppunt::server {
namespace {

using ::testing::HasSubstr;

// What `protoc --include_imports --descriptor_set_out` writes for a new collective service's
// proto that uses the BSN option.
google::protobuf::FileDescriptorSet ErkenningSet() {
  google::protobuf::FileDescriptorSet set;
  google::protobuf::FileDescriptorProto* descriptor_proto = set.add_file();
  google::protobuf::FileDescriptorProto::descriptor()->file()->CopyTo(descriptor_proto);
  options::v1::PersonalData::descriptor()->file()->CopyTo(set.add_file());
  google::protobuf::FileDescriptorProto* f = set.add_file();
  f->set_name("gemeente/erkenning/v1/erkenning.proto");
  f->set_package("gemeente.erkenning.v1");
  f->set_syntax("proto3");
  f->add_dependency("knooppunt/options/v1/options.proto");
  google::protobuf::DescriptorProto* m = f->add_message_type();
  m->set_name("Erkenning");
  auto add = [&](const char* name, int number) {
    google::protobuf::FieldDescriptorProto* field = m->add_field();
    field->set_name(name);
    field->set_number(number);
    field->set_type(google::protobuf::FieldDescriptorProto::TYPE_STRING);
    field->set_label(google::protobuf::FieldDescriptorProto::LABEL_OPTIONAL);
    return field;
  };
  add("kind_bsn", 1)->mutable_options()->MutableExtension(options::v1::personal)->set_bsn(true);
  add("toelichting", 2);
  return set;
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            (name + "." + std::to_string(::getpid()))).string();
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

TEST(DescriptorSetTest, NewTypeIsLoadedFilteredAndChecked) {
  const std::string path = WriteTemp("erkenning.pb", ErkenningSet().SerializeAsString());
  absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> pool = LoadMessageTypes({path});
  std::filesystem::remove(path);
  ASSERT_TRUE(pool.ok()) << pool.status();
  const google::protobuf::Descriptor* type =
      (*pool)->FindMessageTypeByName("gemeente.erkenning.v1.Erkenning");
  ASSERT_NE(type, nullptr);
  // The compiled-in types are there too, as themselves.
  EXPECT_EQ((*pool)->FindMessageTypeByName("gemeente.brp.v1.Persoon"),
            gemeente::brp::v1::Persoon::descriptor());
  EXPECT_TRUE(transform::HasBsnFields(type));

  google::protobuf::DynamicMessageFactory factory;
  std::unique_ptr<google::protobuf::Message> msg(factory.GetPrototype(type)->New());
  msg->GetReflection()->SetString(msg.get(), type->FindFieldByName("kind_bsn"), "999993653");
  msg->GetReflection()->SetString(msg.get(), type->FindFieldByName("toelichting"), "vrije tekst");

  config::v1::FieldPolicy policy;
  policy.add_allow("kind_bsn");
  absl::StatusOr<transform::FieldPlan> plan = transform::FieldPlan::Compile(
      type, policy, [](int, absl::string_view m) { return absl::InvalidArgumentError(m); });
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::string bytes = msg->SerializeAsString();
  std::vector<std::string> removed;
  ASSERT_TRUE(transform::Apply(*plan, true, &bytes, &removed).ok());
  EXPECT_EQ(removed, std::vector<std::string>{"toelichting"});
  std::unique_ptr<google::protobuf::Message> out(factory.GetPrototype(type)->New());
  ASSERT_TRUE(out->ParseFromString(bytes));
  EXPECT_EQ(out->GetReflection()->GetString(*out, type->FindFieldByName("kind_bsn")), "999993653");
  EXPECT_FALSE(out->GetReflection()->HasField(*out, type->FindFieldByName("toelichting")));

  msg->GetReflection()->SetString(msg.get(), type->FindFieldByName("kind_bsn"), "123456789");
  bytes = msg->SerializeAsString();
  absl::Status bad = transform::Apply(*plan, true, &bytes, &removed);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("field kind_bsn"));
}

TEST(DescriptorSetTest, BrokenSetsAreErrorsNamingTheFile) {
  absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> missing =
      LoadMessageTypes({"/nonexistent/types.pb"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/types.pb"));

  const std::string garbage = WriteTemp("garbage.pb", "\xff\xff\xff\xff");
  absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> bad = LoadMessageTypes({garbage});
  std::filesystem::remove(garbage);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr(garbage));

  google::protobuf::FileDescriptorSet set = ErkenningSet();
  set.mutable_file()->DeleteSubrange(1, 1);  // the options file the new one imports
  set.mutable_file(1)->set_dependency(0, "not/there.proto");
  const std::string incomplete = WriteTemp("incomplete.pb", set.SerializeAsString());
  absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> dep = LoadMessageTypes({incomplete});
  std::filesystem::remove(incomplete);
  EXPECT_EQ(dep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dep.status().message(), HasSubstr("not/there.proto"));
}

}  // namespace
}  // namespace knooppunt::server
