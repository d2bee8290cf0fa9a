#!/usr/bin/env node
// A municipality backoffice talking to the Knooppunt gateway, in Node.js.
//
// The same six steps as examples/python/backoffice.py:
//   1. connect with mutual TLS and accept the server only if its certificate carries the
//      gateway's OIN (subject serialNumber);
//   2. a bevraging (gemeente.brp.v1.PersoonVraag) to the BRP person service;
//   3. a bevraging no agreement allows: PERMISSION_DENIED, and what to do about it;
//   4. a melding (gemeente.zaken.v1.ZaakAanmaken) retried with the SAME message id on
//      UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED (honouring RetryInfo), then sent
//      once more to show the gateway stores it once (Receipt.duplicate);
//   5. its delivery status (GetStatus);
//   6. the inbox: Receive the meldingen addressed to us and Ack each.
//
// @grpc/grpc-js + @grpc/proto-loader load proto/ at run time (no generated code);
// protobufjs packs payloads into google.protobuf.Any. Configuration from the environment,
// as for the Python example (examples/README.md). Exit status 0 when every step behaved.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const tls = require('tls');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const REPO = path.resolve(__dirname, '..', '..');
const env = (name, fallback) => process.env[name] || fallback;

const GATEWAY = env('KNOOPPUNT_GATEWAY', '127.0.0.1:18443');
const GATEWAY_OIN = env('KNOOPPUNT_GATEWAY_OIN', '00000099000000000001');
// The envelope sender must be the OIN in our own certificate (else PERMISSION_DENIED).
const MY_OIN = env('KNOOPPUNT_OIN', '00000099300000000014');
const CERT = env('KNOOPPUNT_CERT', path.join(REPO, 'certs/dev/groningen.crt'));
const KEY = env('KNOOPPUNT_KEY', path.join(REPO, 'certs/dev/groningen.key'));
const CA = env('KNOOPPUNT_CA', path.join(REPO, 'certs/dev/ca.crt'));
const PROTO_DIR = env('KNOOPPUNT_PROTO_DIR', path.join(REPO, 'proto'));
const BRP_OIN = env('BRP_OIN', '00000099200000000001');
const BSN = env('BSN', '999993653');
const MELDING_RECIPIENT = env('MELDING_RECIPIENT', 'gemeente:0479');
const INBOX_EXPECT = Number(env('INBOX_EXPECT', '0'));
const INBOX_WAIT_SECONDS = Number(env('INBOX_WAIT_SECONDS', '2'));

const PROTOS = [
  'knooppunt/exchange/v1/exchange.proto',
  'knooppunt/exchange/v1/error_details.proto',
  'gemeente/brp/v1/brp.proto',
  'gemeente/verhuizen/v1/verhuizen.proto',
  'gemeente/zaken/v1/zaken.proto',
];

// What a client does about each status code (docs/onboarding.md has the full table).
const ADVICE = {
  [grpc.status.UNAUTHENTICATED]: 'fix the certificate: it must carry your OIN',
  [grpc.status.PERMISSION_DENIED]: 'no agreement allows this: check sender, purpose, type',
  [grpc.status.INVALID_ARGUMENT]: 'malformed envelope or payload: fix the message',
  [grpc.status.NOT_FOUND]: 'unknown recipient (or message): check the OIN/gemeentecode',
  [grpc.status.ALREADY_EXISTS]: 'message id reused for other content: use a new id',
  [grpc.status.FAILED_PRECONDITION]: 'recipient cannot take this now: contact beheer',
  [grpc.status.RESOURCE_EXHAUSTED]: 'rate limit or full store: retry after RetryInfo',
  [grpc.status.UNAVAILABLE]: 'gateway or endpoint unreachable: retry with the same id',
  [grpc.status.DEADLINE_EXCEEDED]: 'no answer in time: retry with the same id',
};
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED,
  grpc.status.RESOURCE_EXHAUSTED]);
const statusName = (code) => Object.keys(grpc.status).find((k) => grpc.status[k] === code);

const log = (step, text) => console.log(`[node] ${step}: ${text}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const deadline = (seconds) => new Date(Date.now() + seconds * 1000);

// Messages for packing payloads; the service definition for the client.
const root = new protobuf.Root();
root.resolvePath = (origin, target) => {
  const inRepo = path.join(PROTO_DIR, target);
  return fs.existsSync(inRepo) ? inRepo : protobuf.util.path.resolve(origin, target);
};
root.loadSync(PROTOS, { keepCase: true });
const types = (name) => root.lookupType(name);
const definition = protoLoader.loadSync(PROTOS, {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
  includeDirs: [PROTO_DIR],
});
const api = grpc.loadPackageDefinition(definition).knooppunt.exchange.v1;

function pack(typeName, fields) {
  const type = types(typeName);
  return { type_url: `type.googleapis.com/${typeName}`,
    value: Buffer.from(type.encode(type.fromObject(fields)).finish()) };
}

function unpack(any, typeName) {
  if (!any || any.type_url !== `type.googleapis.com/${typeName}`) return null;
  return types(typeName).decode(any.value);
}

function envelope(recipient, purpose, typeName, fields, messageId) {
  const now = Date.now();
  return {
    message_id: messageId || crypto.randomUUID(),
    sender: MY_OIN,
    recipient,
    purpose,
    payload: pack(typeName, fields),
    created_at: { seconds: String(Math.floor(now / 1000)), nanos: (now % 1000) * 1e6 },
  };
}

// The gateway's RetryInfo (google.rpc.RetryInfo in grpc-status-details-bin), in ms.
function retryDelayMs(error) {
  const details = error.metadata && error.metadata.get('grpc-status-details-bin');
  if (!details || details.length === 0) return 0;
  const status = types('knooppunt.exchange.v1.RpcStatus').decode(details[0]);
  for (const detail of status.details) {
    if (detail.type_url.endsWith('/google.rpc.RetryInfo')) {
      const delay = types('knooppunt.exchange.v1.RetryInfo').decode(detail.value).retry_delay || {};
      return Number(delay.seconds || 0) * 1000 + (delay.nanos || 0) / 1e6;
    }
  }
  return 0;
}

const fromEndpoint = (error) =>
  Boolean(error.metadata) && error.metadata.get('knooppunt-error-source').includes('endpoint');

const unary = (client, method, request, seconds = 10) => new Promise((resolve, reject) => {
  client[method](request, { deadline: deadline(seconds) },
    (error, reply) => (error ? reject(error) : resolve(reply)));
});

// A melding: on a transient error the SAME envelope goes again (same message id), so the
// gateway stores it once however often it arrives.
async function sendWithRetries(client, melding, attempts = 5) {
  let backoffMs = 200;
  for (let attempt = 1; ; attempt++) {
    try {
      return await unary(client, 'Send', melding);
    } catch (error) {
      if (!RETRYABLE.has(error.code) || attempt === attempts) throw error;
      const wait = Math.max(backoffMs, retryDelayMs(error));
      log('melding', `${statusName(error.code)}, retrying ${melding.message_id} in ${wait}ms`);
      await sleep(wait);
      backoffMs = Math.min(backoffMs * 2, 10000);
    }
  }
}

// Receive meldingen for at most `seconds`, acknowledging each at once (one not acknowledged
// within the gateway's visibility timeout is handed out again); stop after `expect` (0: all).
function processInbox(client, expect, seconds) {
  return new Promise((resolve, reject) => {
    const received = [];
    const acks = [];
    const call = client.Receive({ max_unacknowledged: expect }, { deadline: deadline(seconds) });
    call.on('data', (incoming) => {
      if (expect && received.length >= expect) return;
      received.push(incoming);
      acks.push(unary(client, 'Ack', { sender: incoming.sender, message_id: incoming.message_id }));
      if (expect && received.length >= expect) call.cancel();
    });
    const finish = () => Promise.all(acks).then(() => resolve(received), reject);
    call.on('error', (error) => {
      if (error.code === grpc.status.CANCELLED || error.code === grpc.status.DEADLINE_EXCEEDED) {
        finish();
      } else {
        reject(error);
      }
    });
    call.on('end', finish);
  });
}

async function main() {
  // 1. mTLS; the server must be the gateway: chain to our CA, host name, and its OIN.
  const credentials = grpc.credentials.createSsl(fs.readFileSync(CA), fs.readFileSync(KEY),
    fs.readFileSync(CERT), {
      checkServerIdentity: (host, cert) => {
        const hostError = tls.checkServerIdentity(host, cert);
        if (hostError) return hostError;
        if (cert.subject.serialNumber !== GATEWAY_OIN) {
          return new Error(`server OIN ${cert.subject.serialNumber} is not the gateway's ${GATEWAY_OIN}`);
        }
        return undefined;
      },
    });
  const client = new api.Exchange(GATEWAY, credentials);
  log('connect', `gateway ${GATEWAY} (OIN ${GATEWAY_OIN} required)`);

  // 2. Bevraging.
  const reply = await unary(client, 'Request',
    envelope(BRP_OIN, 'BRP-bevraging', 'gemeente.brp.v1.PersoonVraag', { bsn: BSN }));
  const persoon = unpack(reply.payload, 'gemeente.brp.v1.Persoon');
  if (!persoon) throw new Error(`unexpected reply type ${reply.payload.type_url}`);
  log('bevraging', `BSN ******${BSN.slice(-3)} is ${persoon.naam.geslachtsnaam} ` +
    `(agreement ${reply.agreement_id}, correlation ${reply.correlation_id})`);

  // 3. A purpose no agreement names.
  try {
    await unary(client, 'Request',
      envelope(BRP_OIN, 'Marketing', 'gemeente.brp.v1.PersoonVraag', { bsn: BSN }));
    throw new Error('a bevraging without agreement was allowed');
  } catch (error) {
    if (error.code !== grpc.status.PERMISSION_DENIED) throw error;
    log('denied', `${statusName(error.code)} (from the ${fromEndpoint(error) ? 'endpoint' : 'gateway'}): ` +
      `${error.details} -> ${ADVICE[error.code]}`);
  }

  // 4. Melding with retries that keep the id; then the same envelope again.
  const melding = envelope(MELDING_RECIPIENT, 'Zaakoverdracht', 'gemeente.zaken.v1.ZaakAanmaken', {
    zaakidentificatie: `JS-${crypto.randomBytes(4).toString('hex')}`,
    zaaktype: 'bezwaar', omschrijving: 'Bezwaarschrift',
  });
  const receipt = await sendWithRetries(client, melding);
  const again = await sendWithRetries(client, melding);
  if (again.message_id !== melding.message_id || !again.duplicate) {
    throw new Error(`a resend was not recognised as the same melding: ${JSON.stringify(again)}`);
  }
  log('melding', `${receipt.message_id} accepted under ${receipt.agreement_id}; ` +
    `resent: duplicate=${again.duplicate}`);

  // 5. Delivery status.
  const status = await unary(client, 'GetStatus', { message_id: melding.message_id });
  log('status', `${status.message_id} is ${status.state}`);

  // 6. Inbox.
  const received = await processInbox(client, INBOX_EXPECT, INBOX_WAIT_SECONDS);
  for (const incoming of received) {
    const what = unpack(incoming.payload, 'gemeente.verhuizen.v1.Verhuismelding')
      ? 'Verhuismelding' : incoming.payload.type_url;
    log('inbox', `received and acknowledged ${what} ${incoming.message_id} ` +
      `from ${incoming.sender} (agreement ${incoming.agreement_id})`);
  }
  if (received.length < INBOX_EXPECT) {
    throw new Error(`expected ${INBOX_EXPECT} inbox meldingen, got ${received.length}`);
  }
  client.close();
  log('done', 'every step behaved as expected');
}

main().catch((error) => {
  // A gRPC error has a numeric code; anything else (a missing file, ...) only a message.
  const grpcError = typeof error.code === 'number';
  const advice = grpcError ? ` -> ${ADVICE[error.code] || 'see docs/onboarding.md'}` : '';
  console.error(`[node] failed: ${grpcError ? `${statusName(error.code)}: ${error.details}` : error.message}` +
    advice);
  process.exit(1);
});
