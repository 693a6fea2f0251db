"""torch.hub entry points: one per registered zoo model.

    torch.hub.load("path/to/zoo", "resnet50", source="local", pretrained=True)
    torch.hub.list("owner/zoo:main")
    torch.hub.help("owner/zoo:main", "resnet50")

Every entry passes ``pretrained=`` and any other keyword argument (``weights="DEFAULT"`` or a tag as in
torchvision's entries, ``num_classes``, ``in_chans``, ``stem``, ...) on to ``zoo.create_model``.
"""

# What `pretrained=True` needs too: huggingface_hub fetches Hub weights, filelock serialises downloads.
dependencies = ["torch", "safetensors", "huggingface_hub", "filelock"]

import zoo as _zoo  # noqa: E402  (torch.hub reads `dependencies` first by convention)


def _entry(name: str):
    def entry(pretrained: bool = False, **kwargs):
        return _zoo.create_model(name, pretrained=pretrained, **kwargs)

    builder_doc = (_zoo.model_entrypoint(name).__doc__ or name).strip()
    entry.__name__ = entry.__qualname__ = name
    entry.__module__ = __name__
    entry.__doc__ = (
        f"{builder_doc}\n\n"
        f"Args:\n"
        f"    pretrained (bool): load the default weights of ``{name}`` from the zoo's manifest.\n"
        f"    weights: ``'DEFAULT'``, a tag, ``'{name}.TAG'`` or ``zoo.get_weights(...)``, as torchvision's\n"
        f"        ``weights=``.\n"
        f"    **kwargs: num_classes, in_chans, and the model's other options, passed to\n"
        f"        ``zoo.create_model('{name}', ...)``.\n"
    )
    return entry


for _name in _zoo.list_models():
    globals()[_name] = _entry(_name)
del _name
