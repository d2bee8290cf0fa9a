#include "tools/perf/payload.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace knooppunt::perf {
namespace {

// Grows `message` with `add` (one small element at a time) until it is at least `bytes` long.
template <typename Message, typename Add>
void GrowTo(Message& message, size_t bytes, Add add) {
  while (message.ByteSizeLong() < bytes) add(message);
}

}  // namespace

gemeente::brp::v1::PersoonVraag QueryOfSize(size_t bytes) {
  gemeente::brp::v1::PersoonVraag query;
  query.set_bsn(kPerfBsn);
  int n = 0;
  GrowTo(query, bytes, [&n](gemeente::brp::v1::PersoonVraag& q) {
    q.add_velden(absl::StrCat("verblijfplaats_historie.adres.veld", n++));
  });
  return query;
}

gemeente::brp::v1::Persoon PersonOfSize(size_t bytes) {
  gemeente::brp::v1::Persoon person;
  person.set_bsn(kPerfBsn);
  person.mutable_naam()->set_voornamen("Jan Pieter");
  person.mutable_naam()->set_voorvoegsel("van der");
  person.mutable_naam()->set_geslachtsnaam("Berg");
  auto* geboorte = person.mutable_geboorte();
  geboorte->mutable_datum()->set_jaar(1987);
  geboorte->mutable_datum()->set_maand(4);
  geboorte->mutable_datum()->set_dag(12);
  geboorte->set_plaats("Groningen");
  geboorte->set_land("Nederland");
  auto* adres = person.mutable_verblijfplaats()->mutable_adres();
  adres->set_straat("Grote Markt");
  adres->set_huisnummer(1);
  adres->set_postcode("9711LV");
  adres->set_woonplaats("Groningen");
  adres->set_gemeentecode("0014");
  person.set_gemeente_van_inschrijving("0014");
  int n = 0;
  GrowTo(person, bytes, [&n](gemeente::brp::v1::Persoon& p) {
    auto* earlier = p.add_verblijfplaats_historie();
    earlier->mutable_adres()->set_straat(absl::StrCat("Herestraat ", n));
    earlier->mutable_adres()->set_huisnummer(n + 1);
    earlier->mutable_adres()->set_postcode("9711AA");
    earlier->mutable_adres()->set_woonplaats("Groningen");
    earlier->mutable_datum_aanvang()->set_jaar(2000 + n % 20);
    earlier->set_functie_adres("W");
    ++n;
  });
  return person;
}

}  // namespace knooppunt::perf
