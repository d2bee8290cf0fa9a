#include "gateway/policy/policy_snapshot.h"

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace knooppunt::policy {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open file"));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

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

}  // namespace

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> LoadPolicy(
    const PolicySources& sources, const google::protobuf::DescriptorPool& types) {
  VersionHash version;

  absl::StatusOr<std::string> registry_text = ReadFile(sources.registry_file);
  if (!registry_text.ok()) return registry_text.status();
  version.Add(sources.registry_file, *registry_text);
  config::v1::Registry registry_proto;
  absl::StatusOr<config::SourceMap> registry_source =
      config::ParseYamlToProto(*registry_text, sources.registry_file, &registry_proto);
  if (!registry_source.ok()) return registry_source.status();
  absl::StatusOr<Registry> registry = Registry::Build(registry_proto, *registry_source);
  if (!registry.ok()) return registry.status();

  std::vector<std::string> agreement_paths = sources.agreement_files;
  for (const std::string& dir : sources.agreement_dirs) {
    absl::StatusOr<std::vector<std::string>> listed = ListYamlFiles(dir);
    if (!listed.ok()) return listed.status();
    agreement_paths.insert(agreement_paths.end(), listed->begin(), listed->end());
  }
  std::vector<AgreementFile> files;
  for (const std::string& path : agreement_paths) {
    absl::StatusOr<std::string> text = ReadFile(path);
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
