"""`rear serve`: a local web page that samples a generator and shows the raster fill as it is drawn.

Needs the `serve` extra (`pip install 'rear-ar[serve]'`): Starlette and uvicorn, never core dependencies.
"""
try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as error:
    raise ModuleNotFoundError(f"rear serve needs the serve extra ({error.name} is missing): "
                              "pip install 'rear-ar[serve]'") from error

from rear.serve.app import build_app, serve
from rear.serve.studio import ServeConfig, Studio, load_studio

__all__ = ["ServeConfig", "Studio", "build_app", "load_studio", "serve"]
