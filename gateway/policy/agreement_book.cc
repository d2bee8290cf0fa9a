#include "gateway/policy/agreement_book.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::policy {
namespace {

using config::v1::EXCHANGE_MODE_BEVRAGING;
using config::v1::EXCHANGE_MODE_MELDING;
using config::v1::EXCHANGE_MODE_UNSPECIFIED;

absl::string_view ModeName(config::v1::ExchangeMode mode) {
  switch (mode) {
    case EXCHANGE_MODE_BEVRAGING: return "bevraging";
    case EXCHANGE_MODE_MELDING: return "melding";
    default: return "unspecified";
  }
}

absl::Time ToAbslTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string FormatUtc(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return "(open)";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// Resolves the party references of one side of an agreement into `out`.
absl::Status ExpandParties(const google::protobuf::RepeatedPtrField<std::string>& refs,
                           const std::string& path, const config::SourceMap& source,
                           const Registry& registry, absl::flat_hash_set<std::string>* out) {
  if (refs.empty()) return source.Error(path, "needs at least one party");
  for (int i = 0; i < refs.size(); ++i) {
    absl::StatusOr<std::vector<std::string>> oins = registry.ExpandPartyRef(refs[i]);
    if (!oins.ok()) return source.Error(absl::StrCat(path, "[", i, "]"), oins.status().message());
    out->insert(oins->begin(), oins->end());
  }
  return absl::OkStatus();
}

// Data minimisation is an explicit choice: every agreement lists its fields or says all pass.
absl::Status CompileFields(const config::v1::Agreement& a, const std::string& path,
                           const config::SourceMap& source, const google::protobuf::Descriptor* type,
                           const google::protobuf::Descriptor* reply_type, CompiledAgreement* c) {
  auto compile = [&](const config::v1::FieldPolicy& policy, const google::protobuf::Descriptor* t,
                     const std::string& key, transform::FieldPlan* out) -> absl::Status {
    const std::string field_path = absl::StrCat(path, ".", key);
    absl::StatusOr<transform::FieldPlan> plan = transform::FieldPlan::Compile(
        t, policy, [&](int i, absl::string_view message) {
          return source.Error(i < 0 ? field_path : absl::StrCat(field_path, ".allow[", i, "]"),
                              message);
        });
    if (!plan.ok()) return plan.status();
    *out = *std::move(plan);
    return absl::OkStatus();
  };
  if (!a.has_fields()) {
    return source.Error(path, "agreement needs fields: {allow: [...]} or fields: {all: true}");
  }
  absl::Status s = compile(a.fields(), type, "fields", &c->fields);
  if (!s.ok()) return s;
  if (reply_type == nullptr) {
    if (a.has_reply_fields()) {
      return source.Error(absl::StrCat(path, ".reply_fields"), "reply_fields without a reply_type");
    }
    return absl::OkStatus();
  }
  if (!a.has_reply_fields()) {
    return source.Error(
        path, "a bevraging agreement needs reply_fields: {allow: [...]} or reply_fields: {all: true}");
  }
  return compile(a.reply_fields(), reply_type, "reply_fields", &c->reply_fields);
}

absl::Status CompileRate(const config::v1::Agreement& a, const std::string& path,
                         const config::SourceMap& source, CompiledAgreement* c) {
  if (!a.has_rate()) return absl::OkStatus();
  const std::string rate_path = absl::StrCat(path, ".rate");
  const config::v1::Rate& r = a.rate();
  if (!(r.per_second() > 0) || std::isinf(r.per_second())) {
    return source.Error(absl::StrCat(rate_path, ".per_second"), "per_second must be above 0");
  }
  if (r.per() == config::v1::RATE_SCOPE_UNSPECIFIED) {
    return source.Error(rate_path, "rate needs per: sender or per: agreement");
  }
  c->has_rate = true;
  c->rate.per_second = r.per_second();
  c->rate.burst = r.burst() > 0 ? r.burst() : std::max(1.0, std::ceil(r.per_second()));
  c->rate_per_sender = r.per() == config::v1::RATE_SCOPE_SENDER;
  return absl::OkStatus();
}

absl::StatusOr<CompiledAgreement> Compile(const config::v1::Agreement& a, const std::string& path,
                                          const config::SourceMap& source,
                                          const Registry& registry,
                                          const google::protobuf::DescriptorPool& types) {
  CompiledAgreement c;
  c.id = a.id();
  c.source = source.Locate(path).ToString();
  if (a.id().empty()) return source.Error(path, "agreement needs an id");
  if (a.message_type().empty()) return source.Error(path, "agreement needs a message_type");
  const google::protobuf::Descriptor* type = types.FindMessageTypeByName(a.message_type());
  if (type == nullptr) {
    return source.Error(absl::StrCat(path, ".message_type"),
                        absl::StrCat("unknown message type '", a.message_type(), "'"));
  }
  if (a.mode() == EXCHANGE_MODE_UNSPECIFIED) {
    return source.Error(path, "agreement needs a mode (bevraging or melding)");
  }
  if (a.mode() == EXCHANGE_MODE_BEVRAGING && a.reply_type().empty()) {
    return source.Error(path, "a bevraging agreement needs a reply_type");
  }
  if (a.mode() == EXCHANGE_MODE_MELDING && !a.reply_type().empty()) {
    return source.Error(absl::StrCat(path, ".reply_type"), "a melding has no reply_type");
  }
  const google::protobuf::Descriptor* reply_type =
      a.reply_type().empty() ? nullptr : types.FindMessageTypeByName(a.reply_type());
  if (!a.reply_type().empty() && reply_type == nullptr) {
    return source.Error(absl::StrCat(path, ".reply_type"),
                        absl::StrCat("unknown message type '", a.reply_type(), "'"));
  }

  c.message_type = a.message_type();
  c.reply_type = a.reply_type();
  c.mode = a.mode();
  absl::Status s = ExpandParties(a.from(), absl::StrCat(path, ".from"), source, registry, &c.senders);
  if (!s.ok()) return s;
  s = ExpandParties(a.to(), absl::StrCat(path, ".to"), source, registry, &c.recipients);
  if (!s.ok()) return s;
  if (a.purposes().empty()) return source.Error(path, "agreement needs at least one purpose");
  for (int i = 0; i < a.purposes_size(); ++i) {
    if (a.purposes(i).empty()) {
      return source.Error(absl::StrCat(path, ".purposes[", i, "]"), "empty purpose");
    }
    c.purposes.insert(a.purposes(i));
  }
  if (a.has_valid_from()) c.valid_from = ToAbslTime(a.valid_from());
  if (a.has_valid_until()) c.valid_until = ToAbslTime(a.valid_until());
  if (c.valid_until <= c.valid_from) {
    return source.Error(absl::StrCat(path, ".valid_until"), "valid_until must be after valid_from");
  }
  if (a.has_retry_window()) {
    c.retry_window =
        absl::Seconds(a.retry_window().seconds()) + absl::Nanoseconds(a.retry_window().nanos());
    if (c.retry_window <= absl::ZeroDuration()) {
      return source.Error(absl::StrCat(path, ".retry_window"), "retry_window must be positive");
    }
  }
  s = CompileFields(a, path, source, type, reply_type, &c);
  if (!s.ok()) return s;
  s = CompileRate(a, path, source, &c);
  if (!s.ok()) return s;
  return c;
}

}  // namespace

absl::string_view DeniedOnName(DeniedOn d) {
  switch (d) {
    case DeniedOn::kNothing: return "none";
    case DeniedOn::kMessageType: return "message_type";
    case DeniedOn::kRecipient: return "recipient";
    case DeniedOn::kPurpose: return "purpose";
    case DeniedOn::kMode: return "mode";
    case DeniedOn::kPeriod: return "period";
  }
  return "unknown";
}

absl::StatusOr<AgreementBook> AgreementBook::Build(const std::vector<AgreementFile>& files,
                                                   const Registry& registry,
                                                   const google::protobuf::DescriptorPool& types) {
  AgreementBook book;
  absl::flat_hash_map<std::string, std::string> seen_ids;  // id → where
  for (const AgreementFile& file : files) {
    for (int i = 0; i < file.agreements.agreements_size(); ++i) {
      const std::string path = absl::StrCat("agreements[", i, "]");
      absl::StatusOr<CompiledAgreement> compiled =
          Compile(file.agreements.agreements(i), path, file.source, registry, types);
      if (!compiled.ok()) return compiled.status();
      auto [it, inserted] = seen_ids.emplace(compiled->id, compiled->source);
      if (!inserted) {
        return file.source.Error(absl::StrCat(path, ".id"),
                                 absl::StrCat("agreement id '", compiled->id,
                                              "' is already used at ", it->second));
      }
      book.agreements_.push_back(*std::move(compiled));
    }
  }
  std::sort(book.agreements_.begin(), book.agreements_.end(),
            [](const CompiledAgreement& a, const CompiledAgreement& b) { return a.id < b.id; });
  for (size_t i = 0; i < book.agreements_.size(); ++i) {
    book.by_message_type_[book.agreements_[i].message_type].push_back(i);
  }
  return book;
}

Decision AgreementBook::Decide(const ExchangeFacts& f) const {
  Decision d;
  // Narrow step by step, only ever over agreements the sender is a party to.
  auto type_it = by_message_type_.find(f.message_type);
  bool any_sender = false, any_recipient = false, any_purpose = false, any_mode = false;
  const CompiledAgreement* out_of_period = nullptr;
  if (type_it != by_message_type_.end()) {
    for (size_t index : type_it->second) {
      const CompiledAgreement& a = agreements_[index];
      if (!a.senders.contains(f.sender_oin)) continue;
      any_sender = true;
      if (!a.recipients.contains(f.recipient_oin)) continue;
      any_recipient = true;
      if (!a.purposes.contains(f.purpose)) continue;
      any_purpose = true;
      if (a.mode != f.mode) continue;
      any_mode = true;
      if (f.at < a.valid_from || f.at >= a.valid_until) {
        out_of_period = &a;
        continue;
      }
      d.agreement = &a;
      return d;
    }
  }
  if (!any_sender) {
    d.denied_on = DeniedOn::kMessageType;
    d.reason = absl::StrCat("no agreement allows sender ", f.sender_oin, " to send message type ",
                            f.message_type);
  } else if (!any_recipient) {
    d.denied_on = DeniedOn::kRecipient;
    d.reason = absl::StrCat("no agreement allows message type ", f.message_type,
                            " from this sender to recipient ", f.recipient_oin);
  } else if (!any_purpose) {
    d.denied_on = DeniedOn::kPurpose;
    d.reason = absl::StrCat("purpose '", f.purpose, "' is not agreed for message type ",
                            f.message_type, " to recipient ", f.recipient_oin);
  } else if (!any_mode) {
    d.denied_on = DeniedOn::kMode;
    d.reason = absl::StrCat("message type ", f.message_type, " to recipient ", f.recipient_oin,
                            " is not agreed as a ", ModeName(f.mode));
  } else {
    d.denied_on = DeniedOn::kPeriod;
    d.reason = absl::StrCat("agreement ", out_of_period->id, " is not in force at ",
                            FormatUtc(f.at), " (valid from ", FormatUtc(out_of_period->valid_from),
                            " until ", FormatUtc(out_of_period->valid_until), ")");
  }
  return d;
}

}  // namespace knooppunt::policy
