"""Backends that run real model weights from disk: segment-anything, diffusers pipelines and transformers models.

Each module here is one backend function `(input, ctx) -> output`, named in its tool's `backends`. What runs
and from which weights comes from the models file (`schemas.ModelsFile`, `vitron models`); every model loads
once per process through the worker model cache (`tools.model_cache`), never from the network.
"""
