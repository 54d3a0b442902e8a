"""Other ways to serve the same ONNX model, for `perfserve bench-http --competitor`.

Each is the idiomatic server for its framework, batching where the framework offers it,
onnxruntime with one thread, one process: what a team would write instead of perfserve.
They run in their own virtualenvs (the frameworks are not perfserve dependencies).
"""
