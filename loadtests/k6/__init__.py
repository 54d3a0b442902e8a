"""k6 scenarios mirroring the Locust users (JavaScript beside this package; see lib.js)."""
