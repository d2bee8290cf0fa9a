// Who is calling, through the real gateway's TLS: a certificate the gateway cannot verify
// gets no connection at all (UNAVAILABLE, the handshake is refused); a verified certificate
// without a usable OIN gets UNAUTHENTICATED; a verified OIN that is not the envelope's sender
// gets PERMISSION_DENIED. Nothing of it reaches an endpoint.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using ::testing::HasSubstr;

class AuthenticationIntegrationTest : public FederationTest {
 protected:
  // A request claiming to be Groningen, on a fresh connection made by `stub`.
  grpc::Status Call(exchange::v1::Exchange::Stub& stub, Envelope* request) {
    *request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    Envelope reply;
    const grpc::Status status = Request(stub, *request, &reply);
    EXPECT_EQ(reply.has_payload(), status.ok());
    return status;
  }

  // The handshake itself is refused: the call fails UNAVAILABLE, nothing is forwarded and
  // no decision is recorded (the gateway never saw an envelope).
  void ExpectHandshakeRefused(exchange::v1::Exchange::Stub& stub) {
    Envelope request;
    const grpc::Status status = Call(stub, &request);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    RecordProperty("grpc_message", status.error_message());
    EXPECT_EQ(brp().call_count(), 0);
    EXPECT_TRUE(gateway().RecordsFor(request.message_id()).empty());
  }

  // Verified but without a usable OIN: UNAUTHENTICATED, recorded as a denial.
  void ExpectUnauthenticated(absl::string_view cert_stem) {
    Envelope request;
    const grpc::Status status =
        Call(*ExchangeStubFor(gateway().address(), cert_stem), &request);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("no usable OIN"));
    EXPECT_EQ(brp().call_count(), 0);
    const audit::v1::DecisionRecord record =
        ExpectDeniedRecord(request, grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(record.reason(), "authentication failed");
    EXPECT_EQ(record.authenticated_oin(), "");
  }
};

TEST_F(AuthenticationIntegrationTest, PlainTlsCredentialsWithCertificateAreAccepted) {
  // The control for NoClientCertificateIsRefused: the same kind of channel (grpc::SslCredentials,
  // host name checked against the gateway's certificate) works once a certificate is presented.
  Envelope request;
  const grpc::Status status =
      Call(*ExchangeStubWithSslCredentials(gateway().address(), "groningen"), &request);
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

TEST_F(AuthenticationIntegrationTest, NoClientCertificateIsRefused) {
  ExpectHandshakeRefused(*ExchangeStubWithoutCertificate(gateway().address()));
}

TEST_F(AuthenticationIntegrationTest, CertificateFromAnotherCaIsRefused) {
  // foreign.crt claims Groningen's OIN but is signed by an unrelated CA.
  ExpectHandshakeRefused(*ExchangeStubFor(gateway().address(), "foreign"));
}

TEST_F(AuthenticationIntegrationTest, ExpiredCertificateIsRefused) {
  ExpectHandshakeRefused(*ExchangeStubFor(gateway().address(), "expired"));
}

TEST_F(AuthenticationIntegrationTest, NotYetValidCertificateIsRefused) {
  ExpectHandshakeRefused(*ExchangeStubFor(gateway().address(), "not-yet-valid"));
}

TEST_F(AuthenticationIntegrationTest, RevokedCertificateIsRefused) {
  // The federation gateway checks the dev CA's CRL (tls.crl_directory).
  ExpectHandshakeRefused(*ExchangeStubFor(gateway().address(), "revoked"));
}

TEST_F(AuthenticationIntegrationTest, CertificateWithoutClientAuthUsageIsRefused) {
  // no-client-auth.crt has extended key usage serverAuth only: not a client certificate.
  ExpectHandshakeRefused(*ExchangeStubFor(gateway().address(), "no-client-auth"));
}

TEST_F(AuthenticationIntegrationTest, CertificateWithoutOinIsUnauthenticated) {
  ExpectUnauthenticated("no-oin");
}

TEST_F(AuthenticationIntegrationTest, CertificateWithTwoOinsIsUnauthenticated) {
  ExpectUnauthenticated("two-oins");
}

TEST_F(AuthenticationIntegrationTest, CertificateWithMalformedOinIsUnauthenticated) {
  ExpectUnauthenticated("bad-oin");
}

TEST_F(AuthenticationIntegrationTest, SpoofedSenderIsPermissionDenied) {
  // Zaanstad's certificate, an envelope that claims to come from Groningen (which is allowed
  // to query BRP).
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  Envelope reply;
  const grpc::Status status = Request("zaanstad", request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("does not match the client certificate's OIN"));
  EXPECT_THAT(status.error_message(), HasSubstr(std::string(kZaanstadOin)));
  EXPECT_FALSE(reply.has_payload());
  EXPECT_EQ(brp().call_count(), 0);
  const audit::v1::DecisionRecord record =
      ExpectDeniedRecord(request, grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(record.authenticated_oin(), kZaanstadOin);
  EXPECT_EQ(record.sender(), kGroningenOin);
  EXPECT_EQ(record.reason(), "sender does not match certificate");
}

TEST_F(AuthenticationIntegrationTest, OneConnectionCannotSwitchIdentity) {
  // Groningen's connection is used for an envelope claiming Amsterdam after a good request.
  Envelope reply;
  ASSERT_TRUE(Request("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply).ok());
  const grpc::Status status =
      Request("groningen", PersoonVraagEnvelope(kAmsterdamOin, "gemeente:0014"), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_EQ(groningen().call_count(), 0);
}

}  // namespace
}  // namespace knooppunt::testing
