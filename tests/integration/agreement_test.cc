// Default deny through the real gateway: an exchange that no agreement in force allows is
// refused with PERMISSION_DENIED naming the dimension that failed, nothing reaches an
// endpoint, and the denial is in the decision log.
#include <string>

#include "gemeente/overlijden/v1/overlijden.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "gateway/client/envelope.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using ::testing::HasSubstr;

class AgreementIntegrationTest : public FederationTest {
 protected:
  // Sends `request` with `cert_stem`'s certificate and expects a denial on `dimension` (as the
  // decision log names it: "no agreement: <dimension>") whose message contains
  // `message_part`.
  void ExpectDenied(absl::string_view cert_stem, const Envelope& request,
                    absl::string_view dimension, absl::string_view message_part) {
    Envelope reply;
    const grpc::Status status = Request(cert_stem, request, &reply);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(message_part)));
    EXPECT_FALSE(reply.has_payload());
    EXPECT_EQ(brp().call_count(), 0);
    EXPECT_EQ(groningen().call_count(), 0);
    const audit::v1::DecisionRecord record =
        ExpectDeniedRecord(request, grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(record.reason(), absl::StrCat("no agreement: ", dimension));
    EXPECT_EQ(record.authenticated_oin(), request.sender());
  }
};

TEST_F(AgreementIntegrationTest, DeniedOnMessageType) {
  // Zaanstad is a municipality but no BRP afnemer: it is party to no PersoonVraag agreement.
  ExpectDenied("zaanstad", PersoonVraagEnvelope(kZaanstadOin, kBrpOin), "message_type",
               "no agreement allows sender 00000099300000000479 to send message type "
               "gemeente.brp.v1.PersoonVraag");
}

TEST_F(AgreementIntegrationTest, DeniedOnMessageTypeWithoutAnyAgreement) {
  gemeente::overlijden::v1::AangifteOverlijden aangifte;
  aangifte.set_bsn(std::string(kTestBsn));
  ExpectDenied("groningen",
               client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin),
                                   "BRP-bevraging", aangifte),
               "message_type", "message type gemeente.overlijden.v1.AangifteOverlijden");
}

TEST_F(AgreementIntegrationTest, DeniedOnRecipient) {
  // Groningen may query BRP (and the test registers), not Amsterdam.
  ExpectDenied("groningen", PersoonVraagEnvelope(kGroningenOin, kAmsterdamOin), "recipient",
               "to recipient 00000099300000000363");
}

TEST_F(AgreementIntegrationTest, DeniedOnPurpose) {
  ExpectDenied("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin, "Marketing"), "purpose",
               "purpose 'Marketing' is not agreed");
}

TEST_F(AgreementIntegrationTest, DeniedOnMode) {
  // Verhuizen → Groningen is agreed as a melding, not as a bevraging (Exchange.Request).
  gemeente::verhuizen::v1::Verhuismelding melding;
  melding.set_bsn(std::string(kTestBsn));
  melding.mutable_nieuw_adres()->set_gemeentecode("0014");
  ExpectDenied("verhuizen",
               client::NewEnvelope(std::string(kVerhuizenOin), "gemeente:0014", "BRP-bijhouding",
                                   melding),
               "mode", "is not agreed as a bevraging");
}

TEST_F(AgreementIntegrationTest, DeniedOnExpiredAgreement) {
  ExpectDenied("amsterdam", PersoonVraagEnvelope(kAmsterdamOin, kBrpOin), "period",
               "agreement brp-bevragen-verlopen is not in force");
}

TEST_F(AgreementIntegrationTest, DeniedOnNotYetValidAgreement) {
  ExpectDenied("verhuizen", PersoonVraagEnvelope(kVerhuizenOin, kBrpOin), "period",
               "agreement brp-bevragen-toekomstig is not in force");
}

TEST_F(AgreementIntegrationTest, DenialDoesNotRevealOtherPartiesAgreements) {
  // Zaanstad is party to no PersoonVraag agreement; its denial must not name any of them.
  Envelope reply;
  const grpc::Status status =
      Request("zaanstad", PersoonVraagEnvelope(kZaanstadOin, kBrpOin), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr("brp-bevragen")));
  EXPECT_THAT(status.error_message(), ::testing::Not(HasSubstr(std::string(kGroningenOin))));
}

}  // namespace
}  // namespace knooppunt::testing
