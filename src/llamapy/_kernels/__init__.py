"""C + Cython kernels. `_ops` is the compiled module; see _ops.pyx."""
import os as _os

# Development hook: several people building at once each point LLAMAPY_DEV_BUILD at their own build
# folder (scripts/dev_build.sh) instead of overwriting one in-place .so that others have loaded.
if _os.environ.get("LLAMAPY_DEV_BUILD"):
    __path__.insert(0, _os.path.join(_os.environ["LLAMAPY_DEV_BUILD"], "llamapy", "_kernels"))
