// Bad share: BAD_SHARE (default 0.05) of requests are malformed on purpose and must come
// back 4xx (a 4xx is then the expected answer, not a failure); the rest are single rows.
//   k6 run -e BAD_SHARE=0.05 -e ROWS=rows.json loadtests/k6/bad_share.js
import http from "k6/http";
import { check } from "k6";
import { BASE_URL, JSON_HEADERS, REFUSED, VARIANT, openLoop, predict, predictPath, thresholds } from "./lib.js";

const BAD_SHARE = Number(__ENV.BAD_SHARE || 0.05);
// Malformed in every protocol: the wrong shape, not numbers, not JSON, nothing.
const BAD_BODIES = [
  JSON.stringify({ instances: [[1, 2]] }),
  JSON.stringify({ instances: [["x"]] }),
  '{"instances": [[1, 2,',
  JSON.stringify({ rows: [] }),
  JSON.stringify({ inputs: [{ name: "input-0", shape: [1, 2], datatype: "FP32", data: [1, 2] }] }),
];

export const options = {
  scenarios: { bad_share: openLoop("mixed") },
  thresholds: thresholds(),
};

export function mixed() {
  if (Math.random() >= BAD_SHARE) {
    predict(1, VARIANT);
    return;
  }
  const bad = BAD_BODIES[Math.floor(Math.random() * BAD_BODIES.length)];
  const res = http.post(`${BASE_URL}${predictPath(VARIANT)}`, bad, {
    headers: JSON_HEADERS,
    responseCallback: REFUSED,
    tags: { name: "bad input" },
  });
  check(res, { "bad input refused with a 4xx": (r) => r.status >= 400 && r.status < 500 });
}
