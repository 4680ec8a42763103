#!/usr/bin/env python3
"""A Relais consumer in Python, with Debian's grpcio, protobuf and cryptography.

It makes the first call of `relaisd dev`, shows what the limited consumer
receives (only its granted fields), decodes an error's details (ErrorInfo
reason, BadRequest field violations, RetryInfo), and renews its certificate
through CredentialService.Renew with a CSR before expiry.

The stubs come from the proto bundle only (generate.sh): run it, then

    python3 relais_client.py --stubs /tmp/relais-stubs --addr 127.0.0.1:4443 \
        --ca DEV/ca.pem --cert DEV/consumers/mairie-exemple/cert.pem \
        --key DEV/consumers/mairie-exemple/key.pem \
        --limited-cert DEV/consumers/ccas-limite/cert.pem \
        --limited-key DEV/consumers/ccas-limite/key.pem \
        --renew-out /tmp/renewed

Every line it prints starts with the step it reports; it exits non-zero on
the first step that does not go as documented (docs/clients.md).
"""

import argparse
import datetime
import os
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stubs", required=True, help="directory generate.sh wrote the Python stubs into")
    p.add_argument("--addr", required=True, help="host:port of the broker's gRPC data API")
    p.add_argument("--server-name", default="localhost", help="name the broker's certificate carries")
    p.add_argument("--ca", required=True, help="the broker's trust bundle (PEM)")
    p.add_argument("--cert", required=True, help="the full consumer's certificate chain (PEM)")
    p.add_argument("--key", required=True, help="the full consumer's private key (PEM)")
    p.add_argument("--limited-cert", required=True, help="the limited consumer's certificate chain (PEM)")
    p.add_argument("--limited-key", required=True, help="the limited consumer's private key (PEM)")
    p.add_argument("--renew-out", required=True, help="directory to write the renewed cert.pem and key.pem into")
    return p.parse_args()


ARGS = parse_args()
sys.path.insert(0, ARGS.stubs)

import grpc  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from relais.common.v1 import common_pb2  # noqa: E402
from relais.credentials.v1 import credentials_pb2, credentials_pb2_grpc  # noqa: E402
from relais.familyquotient.v1 import family_quotient_pb2, family_quotient_pb2_grpc  # noqa: E402

# The sandbox citizen of the first call (fictitious data).
SUBJECT = dict(birth_name="DUPONT", given_names=["Zoé"], sex=common_pb2.SEX_FEMALE,
               birth_date="1984-03-12", birth_place_cog="75056", birth_country_cog="99100")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel(cert_pem, key_pem):
    """An mTLS channel: gRPC core negotiates TLS 1.2/1.3 and ALPN h2 itself."""
    creds = grpc.ssl_channel_credentials(root_certificates=read(ARGS.ca),
                                         private_key=key_pem, certificate_chain=cert_pem)
    return grpc.secure_channel(ARGS.addr, creds,
                               options=[("grpc.ssl_target_name_override", ARGS.server_name)])


def request(recipient, purpose):
    return family_quotient_pb2.GetFamilyQuotientRequest(
        access_context=common_pb2.AccessContext(recipient=recipient, purpose=purpose,
                                                case_reference="DOSSIER-2026-0001"),
        subject=common_pb2.SubjectIdentity(**SUBJECT))


def fields_of(msg):
    """The top-level fields present in an answer, in proto3 JSON names."""
    return sorted(json_format.MessageToDict(msg).keys())


def details(err):
    """Decodes google.rpc.Status from the grpc-status-details-bin trailer."""
    out = {"code": err.code().name, "reason": None, "violations": [], "retry_after_s": None}
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        st = status_pb2.Status.FromString(value)
        for any_detail in st.details:
            if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_detail.Unpack(info)
                out["reason"] = info.reason
            elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                any_detail.Unpack(br)
                out["violations"] += [v.field for v in br.field_violations]
            elif any_detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                ri = error_details_pb2.RetryInfo()
                any_detail.Unpack(ri)
                # Honour it: wait at least this long before the same call.
                out["retry_after_s"] = ri.retry_delay.ToTimedelta().total_seconds()
    return out


def fail(step, msg):
    print(f"{step}: FAILED: {msg}")
    sys.exit(1)


def first_call(stub):
    resp = stub.GetFamilyQuotient(request("21990000100005", "tarification_sociale"), timeout=10)
    print("first call: ok, fields " + ",".join(fields_of(resp)))


def limited_call():
    with channel(read(ARGS.limited_cert), read(ARGS.limited_key)) as ch:
        stub = family_quotient_pb2_grpc.FamilyQuotientServiceStub(ch)
        resp = stub.GetFamilyQuotient(request("21990000100005", "aide_sociale_facultative"), timeout=10)
    got = fields_of(resp)
    leaked = [f for f in ("beneficiaries", "children", "address") if f in got]
    if leaked:
        fail("limited consumer", "received " + ",".join(leaked))
    print("limited consumer: ok, fields " + ",".join(got))


def invalid_siret(stub):
    try:
        stub.GetFamilyQuotient(request("21990000100006", "tarification_sociale"), timeout=10)
    except grpc.RpcError as err:
        d = details(err)
        print(f"invalid siret: code {d['code']} reason {d['reason']} violations {','.join(d['violations'])}")
        return
    fail("invalid siret", "the call succeeded")


def renew(ch):
    """Renews before expiry: at two thirds of the lifetime in production;
    here at once, to show the exchange."""
    current = x509.load_pem_x509_certificate(read(ARGS.cert))
    lifetime = current.not_valid_after - current.not_valid_before
    renew_at = current.not_valid_before + lifetime * 2 / 3
    print(f"renewal due: {renew_at.isoformat()}Z (two thirds of the lifetime), renewing now")
    key = ec.generate_private_key(ec.SECP256R1())
    sans = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(current.subject)
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier(u) for u in sans.get_values_for_type(x509.UniformResourceIdentifier)]),
               critical=False)
           .sign(key, hashes.SHA256()))
    resp = credentials_pb2_grpc.CredentialServiceStub(ch).Renew(
        credentials_pb2.RenewRequest(csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode()), timeout=10)
    new = x509.load_pem_x509_certificate(resp.certificate_pem.encode())
    if new.subject != current.subject:
        fail("renewal", "the new certificate names another subject")
    os.makedirs(ARGS.renew_out, exist_ok=True)
    key_path = os.path.join(ARGS.renew_out, "key.pem")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    # cert.pem holds the leaf then the issuing chain, as the broker's own files do.
    cert_path = os.path.join(ARGS.renew_out, "cert.pem")
    with open(cert_path, "w") as f:
        f.write(resp.certificate_pem + resp.chain_pem)
    print(f"renewed: serial {resp.serial}, not after {resp.not_after.ToDatetime().isoformat()}Z, wrote {cert_path}")
    # The renewed credential works on a new connection.
    with channel(read(cert_path), read(key_path)) as renewed:
        family_quotient_pb2_grpc.FamilyQuotientServiceStub(renewed).GetFamilyQuotient(
            request("21990000100005", "tarification_sociale"), timeout=10)
    print("renewed credential: ok")


def main():
    with channel(read(ARGS.cert), read(ARGS.key)) as ch:
        stub = family_quotient_pb2_grpc.FamilyQuotientServiceStub(ch)
        first_call(stub)
        limited_call()
        invalid_siret(stub)
        renew(ch)


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as err:
        d = details(err)
        print(f"FAILED: code {d['code']} reason {d['reason']}")
        sys.exit(1)
