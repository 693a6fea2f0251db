"""Pretrained weights: what exists, getting a verified file, and loading it into a model.

One module per step of the flow, each importing only the ones below it (checked by import-linter):

* :mod:`~zoo.pretrained.manifest`: ``weights/manifest.json`` and its typed entries;
* :mod:`~zoo.pretrained.cache`: zoo's cache folder: verified markers, this machine's pins, huggingface_hub's
  cache read without importing it, the per-entry lock;
* :mod:`~zoo.pretrained.files`: weight files: safetensors reading and writing, their metadata, the pickle reader;
* :mod:`~zoo.pretrained.fetch`: getting an entry's file, one function per kind of source, and folder names
  (``local-dir:``, ``hf-hub:``);
* :mod:`~zoo.pretrained.load`: building a model around a file: fitting, adapting, describing;
* :mod:`~zoo.pretrained.convert`: torchvision, timm and pickle checkpoints to zoo's layout;
* :mod:`~zoo.pretrained.release`: the maintainer's ``zoo pin``.

What is verified, against what and when is the trust story in ``docs/weights.md``.
Nothing is imported here, so that ``import zoo`` stays light.
"""
