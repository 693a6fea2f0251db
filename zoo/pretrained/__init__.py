"""Pretrained weights, one module per step of the flow (each imports only those below it, checked by import-linter):
``manifest`` (what exists) -> ``cache`` (what this machine verified and holds) -> ``files`` (safetensors and their
header) -> ``fetch`` (getting a verified file) -> ``load`` (building a model around it) -> ``convert``.
The trust story is in docs/weights.md; nothing is imported here, so that ``import zoo`` stays light.
"""
