"""istiolab: a hands-on Istio course.

The `istiolab` command drives the labs and the mesh targets.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("istiolab")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0"
