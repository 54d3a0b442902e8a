"""The wire protocols a prediction can arrive in: perfserve's own `/predict`, the Open
Inference Protocol (V2 REST) and KServe V1.

Each protocol is a `Codec`: how its body becomes rows, how an answer and an error are
written. Everything between (routing, admission, limits, the batcher, the guards,
metrics, `Server-Timing`) is the one path in service/predict.py, so a V2 or V1 request is
admitted, shed, limited and measured exactly as a `/predict` request is.
"""
