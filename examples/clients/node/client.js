#!/usr/bin/env node
// A Relais consumer in Node.js with @grpc/grpc-js and @grpc/proto-loader,
// loading the proto bundle (/docs/proto.tar.gz) at run time: no generated code.
//
// It makes the first call of `relaisd dev`, shows what the limited consumer
// receives (only its granted fields), decodes an error's details (ErrorInfo
// reason, BadRequest field violations, RetryInfo), and renews its
// certificate through CredentialService.Renew with a CSR before expiry
// (Node's crypto makes keys but not CSRs: @peculiar/x509 builds the CSR).
//
//   npm ci
//   node client.js --bundle relais-proto --addr 127.0.0.1:4443 --ca DEV/ca.pem \
//     --cert DEV/consumers/mairie-exemple/cert.pem --key DEV/consumers/mairie-exemple/key.pem \
//     --limited-cert DEV/consumers/ccas-limite/cert.pem --limited-key DEV/consumers/ccas-limite/key.pem \
//     --renew-out /tmp/renewed
//
// Every line it prints starts with the step it reports; it exits non-zero
// on the first step that does not go as documented (docs/clients.md).
'use strict';

require('reflect-metadata'); // @peculiar/x509's dependency injection needs it
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');
const x509 = require('@peculiar/x509');

const { values: args } = parseArgs({
  options: {
    bundle: { type: 'string' },
    addr: { type: 'string' },
    'server-name': { type: 'string', default: 'localhost' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'limited-cert': { type: 'string' },
    'limited-key': { type: 'string' },
    'renew-out': { type: 'string' },
  },
});
for (const k of ['bundle', 'addr', 'ca', 'cert', 'key', 'limited-cert', 'limited-key', 'renew-out']) {
  if (!args[k]) {
    console.error(`usage: client.js --${k} is required`);
    process.exit(2);
  }
}

// The services, loaded from the bundle: camelCase fields (the proto3 JSON
// names), enums as their names, 64-bit integers as strings, absent fields
// left out so that a minimised answer shows as one.
const packageDefinition = protoLoader.loadSync(
  ['relais/familyquotient/v1/family_quotient.proto', 'relais/credentials/v1/credentials.proto'],
  { includeDirs: [args.bundle], longs: String, enums: String, defaults: false, oneofs: false },
);
const api = grpc.loadPackageDefinition(packageDefinition).relais;

// google.rpc.Status and its details, from the same bundle.
const rpc = new protobuf.Root();
rpc.resolvePath = (_origin, target) => path.join(args.bundle, target);
rpc.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const Status = rpc.lookupType('google.rpc.Status');

const SUBJECT = {
  birthName: 'DUPONT', givenNames: ['Zoé'], sex: 'SEX_FEMALE',
  birthDate: '1984-03-12', birthPlaceCog: '75056', birthCountryCog: '99100',
};

function credentials(certFile, keyFile) {
  // grpc-js offers ALPN h2 and TLS 1.2/1.3 itself.
  return grpc.credentials.createSsl(fs.readFileSync(args.ca), fs.readFileSync(keyFile), fs.readFileSync(certFile));
}

function client(Service, certFile, keyFile) {
  return new Service(args.addr, credentials(certFile, keyFile), { 'grpc.ssl_target_name_override': args['server-name'] });
}

function request(recipient, purpose) {
  return { accessContext: { recipient, purpose, caseReference: 'DOSSIER-2026-0001' }, subject: SUBJECT };
}

function call(c, method, req) {
  return new Promise((resolve, reject) => {
    c[method](req, { deadline: Date.now() + 10000 }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

// details decodes google.rpc.Status from the grpc-status-details-bin trailer.
function details(err) {
  const out = { code: grpc.status[err.code], reason: null, violations: [], retryAfterSeconds: null };
  const raw = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  for (const bin of raw) {
    const st = Status.decode(bin);
    for (const any of st.details) {
      const type = rpc.lookupType(any.type_url.slice(any.type_url.lastIndexOf('/') + 1));
      const d = type.toObject(type.decode(any.value), { longs: Number });
      switch (type.fullName) {
        case '.google.rpc.ErrorInfo':
          out.reason = d.reason;
          break;
        case '.google.rpc.BadRequest':
          out.violations.push(...(d.fieldViolations || []).map((v) => v.field));
          break;
        case '.google.rpc.RetryInfo':
          // Honour it: wait at least this long before the same call.
          out.retryAfterSeconds = Number(d.retryDelay?.seconds || 0) + (d.retryDelay?.nanos || 0) / 1e9;
          break;
        default:
      }
    }
  }
  return out;
}

function fail(step, msg) {
  console.log(`${step}: FAILED: ${msg}`);
  process.exit(1);
}

// The leaf is the first certificate of a chain file.
function leafOf(certFile) {
  return new crypto.X509Certificate(fs.readFileSync(certFile));
}

async function renew(creds) {
  const current = new x509.X509Certificate(leafOf(args.cert).raw);
  // Renew before expiry: at two thirds of the lifetime in production;
  // here at once, to show the exchange.
  const renewAt = new Date(current.notBefore.getTime() + (current.notAfter - current.notBefore) * 2 / 3);
  console.log(`renewal due: ${renewAt.toISOString()} (two thirds of the lifetime), renewing now`);
  x509.cryptoProvider.set(crypto.webcrypto);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const san = current.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san.names.items.filter((n) => n.type === 'url').map((n) => ({ type: 'url', value: n.value }));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: current.subjectName, keys, signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension(uris)],
  });
  const resp = await call(creds, 'renew', { csrPem: csr.toString('pem') });
  const renewed = new crypto.X509Certificate(resp.certificatePem);
  if (renewed.subject !== leafOf(args.cert).subject) fail('renewal', 'the new certificate names another subject');
  fs.mkdirSync(args['renew-out'], { recursive: true });
  const keyFile = path.join(args['renew-out'], 'key.pem');
  const pkcs8 = await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  fs.writeFileSync(keyFile, x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
  // cert.pem holds the leaf then the issuing chain, as the broker's own files do.
  const certFile = path.join(args['renew-out'], 'cert.pem');
  fs.writeFileSync(certFile, resp.certificatePem + resp.chainPem);
  const notAfter = new Date(Number(resp.notAfter.seconds) * 1000).toISOString();
  console.log(`renewed: serial ${resp.serial}, not after ${notAfter}, wrote ${certFile}`);
  // The renewed credential works on a new connection.
  const again = client(api.familyquotient.v1.FamilyQuotientService, certFile, keyFile);
  await call(again, 'getFamilyQuotient', request('21990000100005', 'tarification_sociale'));
  again.close();
  console.log('renewed credential: ok');
}

async function main() {
  const fq = client(api.familyquotient.v1.FamilyQuotientService, args.cert, args.key);
  const first = await call(fq, 'getFamilyQuotient', request('21990000100005', 'tarification_sociale'));
  console.log(`first call: ok, fields ${Object.keys(first).sort().join(',')}`);

  const limited = client(api.familyquotient.v1.FamilyQuotientService, args['limited-cert'], args['limited-key']);
  const answer = await call(limited, 'getFamilyQuotient', request('21990000100005', 'aide_sociale_facultative'));
  limited.close();
  const leaked = ['beneficiaries', 'children', 'address'].filter((f) => f in answer);
  if (leaked.length) fail('limited consumer', `received ${leaked.join(',')}`);
  console.log(`limited consumer: ok, fields ${Object.keys(answer).sort().join(',')}`);

  try {
    await call(fq, 'getFamilyQuotient', request('21990000100006', 'tarification_sociale'));
    fail('invalid siret', 'the call succeeded');
  } catch (err) {
    if (err.code === undefined) throw err;
    const d = details(err);
    console.log(`invalid siret: code ${d.code} reason ${d.reason} violations ${d.violations.join(',')}`);
  }
  fq.close();

  const creds = client(api.credentials.v1.CredentialService, args.cert, args.key);
  await renew(creds);
  creds.close();
}

main().catch((err) => {
  const d = err.code !== undefined ? details(err) : null;
  console.log(d ? `FAILED: code ${d.code} reason ${d.reason}` : `FAILED: ${err.message}`);
  process.exit(1);
});
