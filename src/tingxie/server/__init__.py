"""`tingxie serve`: an OpenAI-compatible HTTP API over one loaded model.

Many requests and durable jobs share the model: each has a producer thread (decode + VAD),
one scheduler thread batches segments across all of them under the memory budget.
See app.py for the routes and service.py for how the pieces fit together.
"""
