#!/usr/bin/env node
// rerank-client: a small Node.js client for rerankd.
//
// Loads protos/rerankd/v1/rerank.proto at run time (@grpc/proto-loader), calls Rerank and
// RerankStream with a W3C `traceparent` in the gRPC metadata, and prints both answers with the
// trace ids the server sent back (in the message and in the `x-trace-id` response header) as JSON.
//
//   npm ci && node rerank-client.mjs --addr 127.0.0.1:50051 \
//     --query 'What is the capital of France?' 'Berlin is the capital of Germany.' 'Paris is the capital of France.'
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const PROTOS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "protos");
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

function loadService() {
  const definition = protoLoader.loadSync("rerankd/v1/rerank.proto", {
    includeDirs: [PROTOS],
    keepCase: true, // field names as in the proto: relevance_score, trace_id, ...
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true, // RerankStreamResponse.event names the member that is set
  });
  return grpc.loadPackageDefinition(definition).rerankd.v1.RerankService;
}

function newTraceparent() {
  return `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
}

function firstHeader(metadata, key) {
  const values = metadata ? metadata.get(key) : [];
  return values.length > 0 ? String(values[0]) : "";
}

function results(list) {
  return list.map((r) => ({ index: r.index, relevance_score: r.relevance_score }));
}

function failure(method, err) {
  const name = Object.keys(grpc.status).find((key) => grpc.status[key] === err.code) || err.code;
  return new Error(`${method}: ${name}: ${err.details}`);
}

function callOptions(timeoutMs) {
  return { deadline: new Date(Date.now() + timeoutMs) };
}

function unary(client, request, metadata, timeoutMs) {
  return new Promise((resolve, reject) => {
    let headers;
    const call = client.Rerank(request, metadata, callOptions(timeoutMs), (err, response) => {
      if (err) {
        reject(failure("Rerank", err));
        return;
      }
      resolve({
        id: response.id,
        model: response.model,
        provider: response.provider,
        trace_id: response.trace ? response.trace.trace_id : "",
        header_trace_id: firstHeader(headers, "x-trace-id"),
        header_request_id: firstHeader(headers, "x-request-id"),
        results: results(response.results),
      });
    });
    call.on("metadata", (md) => {
      headers = md;
    });
  });
}

function stream(client, request, metadata, timeoutMs) {
  return new Promise((resolve, reject) => {
    const answer = { id: "", model: "", provider: "", trace_id: "", header_trace_id: "", header_request_id: "", results: [] };
    let messages = 0;
    const call = client.RerankStream({ request }, metadata, callOptions(timeoutMs));
    call.on("metadata", (md) => {
      answer.header_trace_id = firstHeader(md, "x-trace-id");
      answer.header_request_id = firstHeader(md, "x-request-id");
    });
    call.on("data", (message) => {
      messages += 1;
      if (message.event === "header") {
        answer.id = message.header.id;
        answer.model = message.header.model;
        answer.provider = message.header.provider;
        answer.trace_id = message.header.trace ? message.header.trace.trace_id : "";
      } else if (message.event === "results" && !message.results.partial) {
        answer.results.push(...results(message.results.results));
      }
    });
    call.on("error", (err) => reject(failure("RerankStream", err)));
    call.on("end", () => resolve({ answer, messages }));
  });
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      addr: { type: "string", default: "127.0.0.1:50051" },
      query: { type: "string" },
      model: { type: "string", default: "" },
      traceparent: { type: "string" },
      "request-id": { type: "string" },
      "timeout-ms": { type: "string", default: "30000" },
    },
  });
  if (!values.query || positionals.length === 0) {
    throw new Error("usage: rerank-client.mjs --addr HOST:PORT --query QUERY DOCUMENT...");
  }
  const traceparent = values.traceparent || newTraceparent();
  const match = TRACEPARENT.exec(traceparent);
  if (!match) {
    throw new Error(`malformed traceparent ${JSON.stringify(traceparent)}`);
  }
  const timeoutMs = Number(values["timeout-ms"]);

  const RerankService = loadService();
  const client = new RerankService(values.addr, grpc.credentials.createInsecure());
  const request = {
    model: values.model,
    query: values.query,
    documents: positionals.map((text) => ({ text })),
  };
  const metadata = new grpc.Metadata();
  metadata.set("traceparent", traceparent);
  if (values["request-id"]) {
    metadata.set("x-request-id", values["request-id"]);
  }
  try {
    const unaryAnswer = await unary(client, request, metadata, timeoutMs);
    const { answer, messages } = await stream(client, request, metadata, timeoutMs);
    const report = {
      sent_traceparent: traceparent,
      sent_trace_id: match[1],
      unary: unaryAnswer,
      stream: answer,
      stream_messages: messages,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    client.close();
  }
}

main().catch((err) => {
  process.stderr.write(`rerank-client: ${err.message}\n`);
  process.exitCode = 1;
});
