"""The weights hub: the manifest, verified fetching, fast loading, saving and conversion of weights.

Submodules: :mod:`~zoo.hub.manifest` (what weights exist), :mod:`~zoo.hub.entry` (a manifest entry as a
typed, validated dataclass), :mod:`~zoo.hub.fetch` (getting a verified file), :mod:`~zoo.hub.load`
(building a model around a file), :mod:`~zoo.hub.save` (writing one), :mod:`~zoo.hub.metadata` (the
keys zoo stores in a safetensors header), :mod:`~zoo.hub.convert` (from torchvision, timm or a pickle
checkpoint) and :mod:`~zoo.hub.describe`.
Nothing is imported here, so that ``import zoo`` stays light.
"""
