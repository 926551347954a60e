"""`rear serve`: a local web page that samples a generator and shows the raster fill as it is drawn.

Needs the `serve` extra (`pip install 'rear-ar[serve]'`): Starlette and uvicorn, never core dependencies.
"""
from importlib.util import find_spec

_missing = [name for name in ("starlette", "uvicorn") if find_spec(name) is None]
if _missing:
    raise ModuleNotFoundError(f"rear serve needs the serve extra ({', '.join(_missing)} missing): "
                              "pip install 'rear-ar[serve]'")

from rear.serve.app import build_app, serve  # noqa: E402
from rear.config import ServeConfig  # noqa: E402
from rear.serve.studio import Studio, load_studio  # noqa: E402

__all__ = ["ServeConfig", "Studio", "build_app", "load_studio", "serve"]
