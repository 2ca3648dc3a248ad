"""The import path job files and run manifests name for the KerasHub Stable Diffusion 3 renderer
(`model.renderer: raywalk.kerashub:StableDiffusion3Renderer`); it lives in `raywalk.renderers.sd3.renderer`."""

from raywalk.renderers.sd3.renderer import StableDiffusion3Renderer

__all__ = ["StableDiffusion3Renderer"]
