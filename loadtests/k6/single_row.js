// SingleRowUser: one hold-out row per request, open loop (see lib.js for the settings).
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e ROWS=rows.json loadtests/k6/single_row.js
import { openLoop, predict, thresholds, VARIANT } from "./lib.js";

export const options = {
  scenarios: { single_row: openLoop("singleRow") },
  thresholds: thresholds(),
};

export function singleRow() {
  predict(1, VARIANT);
}
