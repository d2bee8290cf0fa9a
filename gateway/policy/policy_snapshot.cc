#include "gateway/policy/policy_snapshot.h"

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/files.h"

namespace knooppunt::policy {
namespace {

absl::StatusOr<std::vector<std::string>> ListYamlFiles(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) {
      files.push_back(entry.path().string());
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": cannot read directory: ", ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

// Incremental SHA-256 over everything loaded, so the version names exactly these files.
class VersionHash {
 public:
  VersionHash() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~VersionHash() { EVP_MD_CTX_free(ctx_); }
  void Add(absl::string_view name, absl::string_view content) {
    const std::string header = absl::StrCat(name.size(), ":", name, content.size(), ":");
    EVP_DigestUpdate(ctx_, header.data(), header.size());
    EVP_DigestUpdate(ctx_, content.data(), content.size());
  }
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, digest, &len);
    return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), len));
  }

 private:
  EVP_MD_CTX* ctx_;
};

// The agreement files in load order: the files named, then each directory's.
absl::StatusOr<std::vector<std::string>> AgreementPaths(const PolicySources& sources) {
  std::vector<std::string> paths = sources.agreement_files;
  for (const std::string& dir : sources.agreement_dirs) {
    absl::StatusOr<std::vector<std::string>> listed = ListYamlFiles(dir);
    if (!listed.ok()) return listed.status();
    paths.insert(paths.end(), listed->begin(), listed->end());
  }
  return paths;
}

}  // namespace

absl::StatusOr<std::string> PolicyVersion(const PolicySources& sources) {
  VersionHash version;
  absl::StatusOr<std::vector<std::string>> agreement_paths = AgreementPaths(sources);
  if (!agreement_paths.ok()) return agreement_paths.status();
  std::vector<std::string> paths = {sources.registry_file};
  paths.insert(paths.end(), agreement_paths->begin(), agreement_paths->end());
  for (size_t i = 0; i < paths.size(); ++i) {
    absl::StatusOr<std::string> text =
        ReadWholeFile(paths[i], i == 0 ? "registry file" : "agreement file");
    if (!text.ok()) return text.status();
    version.Add(paths[i], *text);
  }
  return version.Hex();
}

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> LoadPolicy(
    const PolicySources& sources, const google::protobuf::DescriptorPool& types) {
  VersionHash version;

  absl::StatusOr<std::string> registry_text = ReadWholeFile(sources.registry_file, "registry file");
  if (!registry_text.ok()) return registry_text.status();
  version.Add(sources.registry_file, *registry_text);
  config::v1::Registry registry_proto;
  absl::StatusOr<config::SourceMap> registry_source =
      config::ParseYamlToProto(*registry_text, sources.registry_file, &registry_proto);
  if (!registry_source.ok()) return registry_source.status();
  absl::StatusOr<Registry> registry = Registry::Build(registry_proto, *registry_source);
  if (!registry.ok()) return registry.status();

  absl::StatusOr<std::vector<std::string>> agreement_paths = AgreementPaths(sources);
  if (!agreement_paths.ok()) return agreement_paths.status();
  std::vector<AgreementFile> files;
  for (const std::string& path : *agreement_paths) {
    absl::StatusOr<std::string> text = ReadWholeFile(path, "agreement file");
    if (!text.ok()) return text.status();
    version.Add(path, *text);
    AgreementFile file;
    absl::StatusOr<config::SourceMap> source =
        config::ParseYamlToProto(*text, path, &file.agreements);
    if (!source.ok()) return source.status();
    file.source = *std::move(source);
    files.push_back(std::move(file));
  }
  absl::StatusOr<AgreementBook> book = AgreementBook::Build(files, *registry, types);
  if (!book.ok()) return book.status();
  return std::make_shared<const PolicySnapshot>(*std::move(registry), *std::move(book),
                                                version.Hex());
}

}  // namespace knooppunt::policy
