// Payloads of the performance comparison (tools/perf/compare.sh): a BRP person query and the
// person record that answers it, each grown to a requested serialized size, so every setup
// (direct, Knooppunt, nginx, HAProxy) carries the same bytes.
//
// Guarantees: the query's BSN and the person's BSN pass the 11-proef (the gateway checks
// BSN fields); the filler uses only fields that the "filtering on" agreement of compare.sh
// allows, so filtering removes nothing and the reply keeps its size: the filter's parse, walk and
// re-serialisation are measured, not a smaller reply. Sizes are the payload's serialized
// size (the google.protobuf.Any value), at least `bytes` and at most about 100 bytes more.
#ifndef KNOOPPUNT_TOOLS_PERF_PAYLOAD_H_
#define KNOOPPUNT_TOOLS_PERF_PAYLOAD_H_

#include <cstddef>

#include "gemeente/brp/v1/brp.pb.h"

namespace knooppunt::perf {

inline constexpr char kPerfBsn[] = "999993653";

// PersoonVraag for kPerfBsn; `velden` padded until the message is `bytes` long.
gemeente::brp::v1::PersoonVraag QueryOfSize(size_t bytes);

// Persoon with bsn, naam, geboorte, verblijfplaats and gemeente_van_inschrijving; earlier
// residences (verblijfplaats_historie) added until the message is `bytes` long.
gemeente::brp::v1::Persoon PersonOfSize(size_t bytes);

}  // namespace knooppunt::perf

#endif  // KNOOPPUNT_TOOLS_PERF_PAYLOAD_H_
