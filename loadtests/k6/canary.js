// CanaryUser: requests through the live split, each from one of CANARY_USERS end users
// whose X-User-Id keeps them on one variant; the check fails if a user ever moves while
// the split stands still. Answers are counted per variant (answers_by_variant).
//   k6 run -e CANARY_USERS=1000 -e ROWS=rows.json loadtests/k6/canary.js
import { check } from "k6";
import { Counter } from "k6/metrics";
import { openLoop, predict, thresholds } from "./lib.js";

const CANARY_USERS = Number(__ENV.CANARY_USERS || 1000);
const byVariant = new Counter("answers_by_variant");
const seen = {}; // per VU: user id to the variant that answered it

export const options = {
  scenarios: { canary: openLoop("canary") },
  thresholds: thresholds(),
};

export function canary() {
  const user = `user-${Math.floor(Math.random() * CANARY_USERS)}`;
  const res = predict(1, "", { "X-User-Id": user });
  const variant = res.headers["X-Variant"];
  if (res.status !== 200 || !variant) return;
  byVariant.add(1, { variant: variant });
  const first = seen[user] || (seen[user] = variant);
  check(res, { "sticky: a user keeps its variant": () => first === variant });
}
