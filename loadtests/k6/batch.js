// BatchUser: BATCH_ROWS (default 16) hold-out rows per request, open loop.
//   k6 run -e BATCH_ROWS=16 -e ROWS=rows.json loadtests/k6/batch.js
import { openLoop, predict, thresholds, VARIANT } from "./lib.js";

const BATCH_ROWS = Number(__ENV.BATCH_ROWS || 16);

export const options = {
  scenarios: { batch: openLoop("batch") },
  thresholds: thresholds(),
};

export function batch() {
  predict(BATCH_ROWS, VARIANT);
}
