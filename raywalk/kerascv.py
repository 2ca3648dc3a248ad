"""The import path job files and run manifests name for the KerasCV renderer
(`model.renderer: raywalk.kerascv:KerasCVRenderer`, the default); it lives in `raywalk.renderers.kerascv.renderer`."""

from raywalk.renderers.kerascv.renderer import KerasCVRenderer

__all__ = ["KerasCVRenderer"]
