// Shared by the k6 scenarios: settings from the environment, request bodies in the
// target's protocol, and the thresholds every scenario gates on.
//
//   BASE_URL        the target (default http://127.0.0.1:8000)
//   PROTOCOL        perfserve | v1 | v2 (default perfserve)
//   VARIANT         a variant (perfserve) or the target's model (v1, v2); empty: the split
//   ROWS            a JSON file of hold-out rows (python -m loadtests.k6.rows > rows.json)
//   RATE, DURATION  arrivals per second, and for how long (default 50, 30s)
//   P99_MS          threshold on the p99 of successful requests (default 50)
//   MAX_ERROR_RATE  threshold on the share of failed requests (default 0.01)
import http from "k6/http";
import { check } from "k6";

export const BASE_URL = (__ENV.BASE_URL || "http://127.0.0.1:8000").replace(/\/$/, "");
export const PROTOCOL = __ENV.PROTOCOL || "perfserve";
export const VARIANT = __ENV.VARIANT || "";
const RATE = Number(__ENV.RATE || 50);
const DURATION = __ENV.DURATION || "30s";
const P99_MS = Number(__ENV.P99_MS || 50);
const MAX_ERROR_RATE = Number(__ENV.MAX_ERROR_RATE || 0.01);
const ROWS = JSON.parse(open(__ENV.ROWS || "rows.json"));
const SPLIT_MODEL = "perfserve";

if (!["perfserve", "v1", "v2"].includes(PROTOCOL)) {
  throw new Error(`PROTOCOL=${PROTOCOL}: allowed perfserve, v1, v2`);
}

export const JSON_HEADERS = { "Content-Type": "application/json" };
export const OK = http.expectedStatuses({ min: 200, max: 299 });
export const REFUSED = http.expectedStatuses({ min: 400, max: 499 });

// Open loop: arrivals at RATE per second whatever the answers' pace, as the native sweep.
export function openLoop(exec) {
  return {
    executor: "constant-arrival-rate",
    exec: exec,
    rate: RATE,
    timeUnit: "1s",
    duration: DURATION,
    preAllocatedVUs: Math.max(4, Math.ceil(RATE / 10)),
    maxVUs: Math.max(16, Math.ceil(RATE)),
  };
}

export function thresholds() {
  return {
    "http_req_duration{expected_response:true}": [`p(99)<${P99_MS}`],
    http_req_failed: [`rate<${MAX_ERROR_RATE}`],
    checks: [`rate>${1 - MAX_ERROR_RATE}`],
  };
}

// The path a prediction is posted to; an empty model asks perfserve's traffic split.
export function predictPath(model) {
  if (PROTOCOL === "v1") return `/v1/models/${model || SPLIT_MODEL}:predict`;
  if (PROTOCOL === "v2") return `/v2/models/${model || SPLIT_MODEL}/infer`;
  return model ? `/models/${model}/predict` : "/predict";
}

// `count` consecutive hold-out rows from a random place, as the protocol's body.
export function body(count) {
  const start = Math.floor(Math.random() * ROWS.length);
  const rows = [];
  for (let i = 0; i < count; i++) rows.push(ROWS[(start + i) % ROWS.length]);
  if (PROTOCOL === "v2") {
    const tensor = {
      name: "input-0",
      shape: [rows.length, rows[0].length],
      datatype: "FP32",
      data: rows.flat(),
    };
    return JSON.stringify({ inputs: [tensor] });
  }
  return JSON.stringify({ instances: rows });
}

// How many rows an answer answers, in any of the three protocols.
function answeredRows(res) {
  const document = res.json();
  if (Array.isArray(document.predictions)) return document.predictions.length;
  const outputs = document.outputs;
  return Array.isArray(outputs) && outputs.length ? outputs[0].shape[0] : -1;
}

// Post `count` rows and check the answer holds one prediction per row.
export function predict(count, model, headers) {
  const res = http.post(`${BASE_URL}${predictPath(model)}`, body(count), {
    headers: Object.assign({}, JSON_HEADERS, headers || {}),
    responseCallback: OK,
    tags: { name: predictPath(model ? "[model]" : "") },
  });
  check(res, { [`200 with ${count} predictions`]: (r) => r.status === 200 && answeredRows(r) === count });
  return res;
}
