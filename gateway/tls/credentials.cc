#include "gateway/tls/credentials.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/files.h"
#include "gateway/identity/crl_watcher.h"
#include "gateway/identity/peer_identity.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace knooppunt::tls {
namespace {

// Runs after gRPC verified the chain: the certificate must name the expected organisation.
class OinVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  OinVerifier(std::string expected_oin, observability::PeerCertificateSink* certificates)
      : expected_oin_(std::move(expected_oin)), certificates_(certificates) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback, grpc::Status* sync_status) override {
    const grpc::string_ref pem = request->peer_cert();
    absl::StatusOr<std::string> oin =
        identity::OinFromCertificatePem(absl::string_view(pem.data(), pem.size()));
    if (!oin.ok()) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  absl::StrCat("server certificate: ", oin.status().message()));
    } else if (*oin != expected_oin_) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                  absl::StrCat("server certificate carries OIN ", *oin,
                                               ", expected ", expected_oin_));
    } else {
      *sync_status = grpc::Status::OK;
      if (certificates_ != nullptr) {
        certificates_->OnPeerCertificate("endpoint", *oin,
                                         absl::string_view(pem.data(), pem.size()));
      }
    }
    return true;  // decided synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::string expected_oin_;
  observability::PeerCertificateSink* const certificates_;
};

// Server side, after gRPC verified the client's chain: a certificate that a CRL loaded by
// the CrlWatcher revokes is refused at the handshake, whenever the CRL arrived.
class RevocationVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit RevocationVerifier(const identity::CrlWatcher* crls) : crls_(crls) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> callback, grpc::Status* sync_status) override {
    const grpc::string_ref pem = request->peer_cert();
    *sync_status = crls_->IsRevokedPem(absl::string_view(pem.data(), pem.size()))
                       ? grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                      "client certificate is revoked")
                       : grpc::Status::OK;
    return true;  // decided synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const identity::CrlWatcher* const crls_;
};

}  // namespace

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> pem = ReadWholeFile(path, what);
  if (pem.ok() && pem->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " ", path, " is empty"));
  }
  return pem;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsServerCredentials(
    const ServerTlsFiles& files) {
  for (const auto& [path, what] : {std::pair{files.cert_file, "certificate file"},
                                   std::pair{files.key_file, "key file"},
                                   std::pair{files.client_ca_file, "client CA file"}}) {
    absl::StatusOr<std::string> pem = ReadPemFile(path, what);
    if (!pem.ok()) return pem.status();
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.client_ca_file,
      std::max<int64_t>(1, absl::ToInt64Seconds(files.refresh_interval)));
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  if (!files.crl_directory.empty()) options.set_crl_directory(files.crl_directory);
  if (files.revocation != nullptr) {
    options.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<RevocationVerifier>(
            files.revocation));
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    const std::string& root_pem, const std::string& cert_pem, const std::string& key_pem,
    const std::string& expected_server_oin) {
  return MutualTlsChannelCredentials(
      std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
          root_pem, std::vector<grpc::experimental::IdentityKeyCertPair>{{key_pem, cert_pem}}),
      expected_server_oin);
}

std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider,
    const std::string& expected_server_oin, observability::PeerCertificateSink* certificates) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(std::move(provider));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  // Identity is the OIN, not the host name: parties are registered by address and OIN.
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<OinVerifier>(expected_server_oin,
                                                                          certificates));
  options.set_check_call_host(false);
  return grpc::experimental::TlsCredentials(options);
}

std::shared_ptr<grpc::experimental::CertificateProviderInterface> WatchCertificateFiles(
    const std::string& key_file, const std::string& cert_file, const std::string& ca_file,
    absl::Duration refresh_interval) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      key_file, cert_file, ca_file, std::max<int64_t>(1, absl::ToInt64Seconds(refresh_interval)));
}

}  // namespace knooppunt::tls
