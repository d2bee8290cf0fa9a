#!/usr/bin/env python3
"""Regenerates the seed corpora of the fuzz targets in tests/fuzz/corpus/<target>/.

Seeds are small, real inputs of each kind, so the fuzzer starts from what the gateway sees:
  envelope_fuzz        envelopes with domain payloads (protoc --encode from text format)
  gateway_config_fuzz  deploy/demo/gateway.yaml and variants
  policy_fuzz          policies/registry.yaml + agreement files ("#%% agreements" between)
Files named regression_* reproduce bugs the fuzzers found; every CI run replays them.
  oin_fuzz             DER certificates with 0, 1, 2 and malformed serialNumber attributes
                       (openssl; the keys are made in a temporary directory and thrown away)
  audit_export_fuzz    export files whose checkpoints are signed with the RFC 8032 7.1 TEST 1
                       Ed25519 key, a published test vector (the key the target trusts)
Needs protoc, openssl and python3-cryptography. Run from anywhere; the output is committed.
"""
import base64
import hashlib
import pathlib
import shutil
import subprocess
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO = pathlib.Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fuzz" / "corpus"
PROTO_FILES = [
    "knooppunt/exchange/v1/envelope.proto",
    "gemeente/brp/v1/brp.proto",
    "gemeente/verhuizen/v1/verhuizen.proto",
    "gemeente/overlijden/v1/overlijden.proto",
    "gemeente/zaken/v1/zaken.proto",
]
HEADER = """message_id: "3f2b8c1e-9d4a-4b7e-8f6a-1c2d3e4f5a6b"
sender: "00000099300000000014"
recipient: "00000099100000000001"
purpose: "brp-bevraging"
trace { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }
"""
ENVELOPES = {
    "persoonvraag": """payload { [type.googleapis.com/gemeente.brp.v1.PersoonVraag] {
  bsn: "999993653" velden: "naam" peildatum { jaar: 2026 maand: 1 dag: 2 } } }""",
    "persoon": """payload { [type.googleapis.com/gemeente.brp.v1.Persoon] {
  bsn: "999993653" a_nummer: "1234567890"
  naam { voornamen: "Jan Piet" voorvoegsel: "van der" geslachtsnaam: "Berg" }
  geboorte { datum { jaar: 1980 maand: 5 dag: 17 } plaats: "Groningen" land: "Nederland" }
  nationaliteiten { code: "0001" omschrijving: "Nederlandse" }
  verblijfplaats { adres { straat: "Grote Markt" huisnummer: 1 postcode: "9711LV"
                           woonplaats: "Groningen" gemeentecode: "0014" } functie_adres: "W" }
  verblijfplaats_historie { adres { straat: "Dam" huisnummer: 1 gemeentecode: "0363" } }
  ouders { bsn: "999990019" naam { geslachtsnaam: "Berg" } ouder_aanduiding: "1" }
  partners { bsn: "999991905" soort_verbintenis: "H" }
  gemeente_van_inschrijving: "0014"
  indicaties { key: "geheimhouding" value: "1" } } }""",
    "persoon_bad_bsn": """payload { [type.googleapis.com/gemeente.brp.v1.Persoon] {
  bsn: "123456789" ouders { bsn: "999990019" } ouders { bsn: "12" } } }""",
    "verhuismelding": """payload { [type.googleapis.com/gemeente.verhuizen.v1.Verhuismelding] {
  bsn: "999993653" nieuw_adres { straat: "Grote Markt" huisnummer: 1 gemeentecode: "0014" }
  datum_verhuizing { jaar: 2026 maand: 3 dag: 1 }
  meeverhuizenden { bsn: "999991905" relatie: "partner" toestemming: true }
  email: "jan@example.org" hoofdbewoner_bsn: "999990019" } }""",
    "unknown_type": """payload { type_url: "type.googleapis.com/gemeente.onbekend.v1.X" value: "\\n\\x03abc" }""",
    "garbage_payload": """payload { type_url: "type.googleapis.com/gemeente.brp.v1.Persoon" value: "\\x0a\\xff\\xff\\xff\\xff\\x0f" }""",
}


def fresh(target):
    d = CORPUS / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def envelopes():
    out = fresh("envelope_fuzz")
    for name, payload in ENVELOPES.items():
        blob = subprocess.run(
            ["protoc", "-I", str(REPO / "proto"), "--encode=knooppunt.exchange.v1.Envelope",
             *PROTO_FILES],
            input=(HEADER + payload).encode(), capture_output=True, check=True).stdout
        (out / name).write_bytes(blob)


def gateway_configs():
    out = fresh("gateway_config_fuzz")
    demo = (REPO / "deploy" / "demo" / "gateway.yaml").read_text()
    (out / "demo.yaml").write_text(demo)
    (out / "minimal.yaml").write_text(
        "listen: 127.0.0.1:8443\n"
        "tls: {cert_file: a.crt, key_file: a.key, client_ca_file: ca.crt}\n"
        "upstream_tls: {cert_file: a.crt, key_file: a.key, ca_file: ca.crt}\n"
        "registry_file: registry.yaml\nagreement_dirs: [agreements]\n")
    (out / "anchors.yaml").write_text("a: &x [1, 2]\nb: *x\nlisten: {x: [[[]]]}\n")
    # Regression: yaml-cpp 0.7 looped forever on a document starting with a comma.
    (out / "regression_leading_comma.yaml").write_text(
        "# yaml-cpp 0.7 looped forever on a document starting with a comma\n, listen: x\n")


def policies():
    out = fresh("policy_fuzz")
    registry = (REPO / "policies" / "registry.yaml").read_text()
    agreements = sorted((REPO / "policies" / "agreements").glob("*.yaml"))
    sep = "\n#%% agreements\n"
    (out / "demo").write_text(registry + sep + sep.join(a.read_text() for a in agreements))
    for a in agreements:
        (out / a.stem).write_text(registry + sep + a.read_text())
    (out / "regression_leading_comma").write_text("," + sep + "agreements: []\n")


def certificates():
    out = fresh("oin_fuzz")
    subjects = {
        "one_oin": "/O=Gemeente Groningen/serialNumber=00000099300000000014/CN=groningen",
        "no_oin": "/O=Nobody/CN=nobody",
        "two_oins": "/serialNumber=00000099300000000014/serialNumber=00000099300000000363/CN=x",
        "short_oin": "/serialNumber=12345/CN=short",
        "letters_oin": "/serialNumber=0000009930000000001X/CN=letters",
    }
    with tempfile.TemporaryDirectory() as tmp:
        key = pathlib.Path(tmp) / "key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-out", str(key)], check=True,
                       capture_output=True)
        for name, subject in subjects.items():
            der = subprocess.run(
                ["openssl", "req", "-new", "-x509", "-key", str(key), "-subj", subject,
                 "-days", "30", "-outform", "DER", "-set_serial", "4242"],
                capture_output=True, check=True).stdout
            (out / f"{name}.der").write_bytes(der)


def exports():
    out = fresh("audit_export_fuzz")
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id = hashlib.sha256(spki).hexdigest()[:32]  # audit_crypto.cc KeyIdOf

    def export(first, count, checkpoints, instance=b"knooppunt-1"):
        head = bytes(32) if first == 1 else None
        lines, heads = [], {}
        for seq in range(first, first + count):
            record = f"decision record {seq}".encode()
            if head is None:  # a retention prefix: the chain continues from a checkpoint
                head = hashlib.sha256(b"prefix").digest()
                heads[first - 1] = head
            head = hashlib.sha256(head + seq.to_bytes(8, "big") + record).digest()
            heads[seq] = head
            lines.append(f"R\t{seq}\t{head.hex()}\t{base64.b64encode(record).decode()}\n")
        cps = []
        for seq in checkpoints:
            t = 1767225600000000000 + seq
            msg = (f"knooppunt-audit-checkpoint/v1\nseq={seq}\nhead={heads[seq].hex()}\n"
                   f"time_ns={t}\ninstance={instance.decode()}\nkey_id={key_id}\n").encode()
            cps.append(f"C\t{seq}\t{heads[seq].hex()}\t{t}\t{base64.b64encode(instance).decode()}"
                       f"\t{key_id}\t{key.sign(msg).hex()}\n")
        return "#knooppunt-audit-export v1\n" + "".join(cps) + "".join(lines)

    (out / "signed").write_text(export(1, 6, [3, 6]))
    (out / "unsigned_tail").write_text(export(1, 5, [2]))
    (out / "retention_prefix").write_text(export(4, 4, [3, 7]))
    # Regression: a record at seq INT64_MIN overflowed seq - 1 in the chain verifier.
    (out / "regression_min_seq").write_text(
        "#knooppunt-audit-export v1\nR\t-9223372036854775808\t00\tAA==\n")
    (out / "tampered").write_text(export(1, 4, [4]).replace(
        base64.b64encode(b"decision record 3").decode(), base64.b64encode(b"x").decode()))


if __name__ == "__main__":
    envelopes()
    gateway_configs()
    policies()
    certificates()
    exports()
