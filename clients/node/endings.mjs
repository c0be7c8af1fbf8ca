#!/usr/bin/env node
// endings: drive rerankd with @grpc/grpc-js through the ways a call can end, and report what the
// client saw as JSON (the test suite uses it to check that the server reports the same endings).
//
//   node endings.mjs cancel-stream --addr HOST:PORT --documents 2000 --after 3
//       RerankStream, one result per message with the documents returned; read `after` messages,
//       pause, then cancel the call.
//   node endings.mjs deadline --addr HOST:PORT --model hanging --count 100 --concurrency 4 --timeout-ms 50
//       `count` Rerank calls, `concurrency` at a time, with a `timeout-ms` deadline each; the codes seen.
//   node endings.mjs error --addr HOST:PORT --model no-such-model
//       One failing Rerank; its code and the ids in the error's trailing metadata.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTOS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "protos");

function loadService() {
  const definition = protoLoader.loadSync("rerankd/v1/rerank.proto", {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).rerankd.v1.RerankService;
}

function codeName(code) {
  return Object.keys(grpc.status).find((key) => grpc.status[key] === code) || String(code);
}

function first(metadata, key) {
  const values = metadata ? metadata.get(key) : [];
  return values.length > 0 ? String(values[0]) : "";
}

function documents(count) {
  const filler = "rivers, bridges and the old town ".repeat(8);
  return Array.from({ length: count }, (_, i) => ({ text: `Passage ${i}: ${filler}` }));
}

function cancelStream(client, values) {
  const after = Number(values.after);
  const request = {
    request: { model: values.model, query: "bridges", documents: documents(Number(values.documents)), return_documents: true },
    results_per_message: 1,
  };
  return new Promise((resolve) => {
    let received = 0;
    let requestId = "";
    const call = client.RerankStream(request, new grpc.Metadata(), { deadline: new Date(Date.now() + 30000) });
    call.on("metadata", (md) => {
      requestId = first(md, "x-request-id");
    });
    call.on("data", () => {
      received += 1;
      if (received === after) {
        call.pause();
        setTimeout(() => call.cancel(), 200);
      }
    });
    call.on("error", (err) => resolve({ received, request_id: requestId, code: codeName(err.code) }));
    call.on("end", () => resolve({ received, request_id: requestId, code: "OK" }));
  });
}

function oneUnary(client, request, timeoutMs) {
  return new Promise((resolve) => {
    client.Rerank(request, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err) => {
      resolve(err ? codeName(err.code) : "OK");
    });
  });
}

async function deadline(client, values) {
  // Connect first: a deadline spent on the connection's handshake would never reach the server.
  await new Promise((resolve, reject) => client.waitForReady(Date.now() + 10000, (err) => (err ? reject(err) : resolve())));
  const request = { model: values.model, query: "bridges", documents: documents(Number(values.documents)) };
  // `concurrency` workers, each making its calls one after the other.
  const codes = [];
  let left = Number(values.count);
  const worker = async () => {
    while (left > 0) {
      left -= 1;
      codes.push(await oneUnary(client, request, Number(values["timeout-ms"])));
    }
  };
  await Promise.all(Array.from({ length: Number(values.concurrency) }, worker));
  const counts = {};
  for (const code of codes) counts[code] = (counts[code] || 0) + 1;
  return { calls: codes.length, codes: counts };
}

function error(client, values) {
  const request = { model: values.model, query: "bridges", documents: documents(2) };
  return new Promise((resolve) => {
    client.Rerank(request, new grpc.Metadata(), { deadline: new Date(Date.now() + 10000) }, (err) => {
      if (!err) {
        resolve({ code: "OK" });
        return;
      }
      resolve({
        code: codeName(err.code),
        details: err.details,
        trailer_request_id: first(err.metadata, "x-request-id"),
        trailer_trace_id: first(err.metadata, "x-trace-id"),
      });
    });
  });
}

const COMMANDS = { "cancel-stream": cancelStream, deadline, error };

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      addr: { type: "string", default: "127.0.0.1:50051" },
      model: { type: "string", default: "" },
      documents: { type: "string", default: "20" },
      after: { type: "string", default: "3" },
      count: { type: "string", default: "100" },
      concurrency: { type: "string", default: "4" },
      "timeout-ms": { type: "string", default: "50" },
    },
  });
  const command = COMMANDS[positionals[0]];
  if (!command) {
    throw new Error(`usage: endings.mjs ${Object.keys(COMMANDS).join("|")} --addr HOST:PORT ...`);
  }
  const RerankService = loadService();
  const client = new RerankService(values.addr, grpc.credentials.createInsecure());
  try {
    process.stdout.write(`${JSON.stringify(await command(client, values))}\n`);
  } finally {
    client.close();
  }
}

main().catch((err) => {
  process.stderr.write(`endings: ${err.message}\n`);
  process.exitCode = 1;
});
